"""``python -m toolkit.cli``: the ``jrs`` command where its script is not on ``PATH``."""

from toolkit.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="jrs")
