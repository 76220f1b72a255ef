"""Which modules contribute commands to ``jrs``; each exposes a ``commands`` list."""

from __future__ import annotations

import importlib

import click

#: Modules under toolkit.cli that define ``commands: list[click.Command]``.
COMMAND_MODULES: list[str] = [
    "es",
    "data",
    "text",
    "image",
    "mapping",
    "build",
    "indexing",
    "search",
    "evaluate",
    "kibana",
    "viz",
    "web",
    "simclr",
    "vectors",
]


def all_commands() -> list[click.Command]:
    out: list[click.Command] = []
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"toolkit.cli.{name}")
        out.extend(module.commands)
    return out
