"""The ``jrs`` command line: a thin shell over the library API."""

from __future__ import annotations

import click

from toolkit import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="jrs")
def cli() -> None:
    """Japanese recipe text-to-image search on Elasticsearch."""


def _register() -> None:
    """Attach the command modules (each exposes ``commands``: a list of Click commands)."""
    from toolkit.cli import registry

    for command in registry.all_commands():
        cli.add_command(command)


_register()
