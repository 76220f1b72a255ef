"""The ``jrs`` command line: a thin shell over the library API."""

from __future__ import annotations

import logging

import click

from toolkit import __version__
from toolkit.cli.common import run_reporting_errors, set_log_level, terminate_as_interrupt


class _Jrs(click.Group):
    """The command group: the same error adapter as :func:`toolkit.cli.common.user_errors` for every command."""

    def invoke(self, ctx: click.Context):
        with terminate_as_interrupt():  # SIGTERM stops a command as Ctrl-C does, cleanups included
            return run_reporting_errors(lambda: super(_Jrs, self).invoke(ctx), ctx.exit)


@click.group(cls=_Jrs, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="jrs")
@click.option("--quiet", "-q", "quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--verbose", "-v", "verbose", count=True, help="More detail on stderr (-v: debug).")
def cli(quiet: bool, verbose: int) -> None:
    """Japanese recipe text-to-image search on Elasticsearch.

    Messages go to stderr through the ``toolkit`` loggers: info by default, warnings only with
    --quiet (or a command's own --quiet, which also hides progress bars), debug with -v.
    """
    set_log_level(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _register() -> None:
    """Attach the command modules (each exposes ``commands``: a list of Click commands)."""
    from toolkit.cli import registry

    for command in registry.all_commands():
        cli.add_command(command)


_register()
