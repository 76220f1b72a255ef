"""Step ids: ``"<recipe_id>:<position>"``, the corpus-wide key of a step in every vector set and index."""

from __future__ import annotations

from toolkit.errors import ToolkitError

SEPARATOR = ":"


class StepIdError(ToolkitError):
    """A string that is not ``recipe_id:position``."""


def format_step_id(recipe_id: str, position: int) -> str:
    """``"<recipe_id>:<position>"``."""
    return f"{recipe_id}{SEPARATOR}{position}"


def recipe_of(step_id: str) -> str:
    """The recipe id of a step id (everything before the first colon)."""
    return step_id.split(SEPARATOR, 1)[0]


def parse_step_id(step_id: str) -> tuple[str, int]:
    """``(recipe_id, position)`` of ``step_id``; :class:`StepIdError` when it is malformed."""
    recipe_id, sep, position = step_id.partition(SEPARATOR)
    if not sep or not recipe_id or not position.lstrip("-").isdigit():
        raise StepIdError(f"step id {step_id!r} is not '<recipe_id>:<position>'")
    return recipe_id, int(position)
