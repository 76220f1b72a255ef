"""Click options whose defaults come from the library's option dataclasses (declared once, there).

``default_from("toolkit.mapping.config:MappingConfig.dim")`` reads the dataclass field's default when the
option is used or its help is shown, so naming a torch-backed config does not import torch at start-up.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from toolkit.index.template import DEFAULT_ALIAS

#: ``--linear-weight`` of ``jrs build`` and ``jrs train-mapping`` (MappingConfig.linear_weight).
LINEAR_WEIGHT_HELP = (
    "Share of the cosine given to a CCA of the same features, fused into the vectors after training "
    "(0: the towers only)."
)


#: ``--text-members`` of ``jrs build`` and ``jrs train-mapping`` (MappingConfig.text_members).
TEXT_MEMBERS_HELP = (
    "Text towers trained from seeds SEED, SEED+1, ... and averaged (an ensemble against the one fixed "
    "image side: better ranking, most with few training pairs; each costs one more training run). "
    "Default: toolkit.mapping.config.DEFAULT_TEXT_MEMBERS (3)."
)


#: ``--mix-share`` of ``jrs build`` and ``jrs train-mapping`` (MappingConfig.mix_share).
MIX_SHARE_HELP = (
    "Bag text tower: mixed pairs added to each training batch, as a share of it (two steps' tokens "
    "together with the mean of their photo features; MixGen); 0 turns it off. "
    "Default: toolkit.mapping.config.DEFAULT_MIX_SHARE (0.5) with --text-tower bag, 0 with mean."
)


#: ``--linear-strong-reg`` of ``jrs build`` and ``jrs train-mapping`` (MappingConfig.linear_strong_reg).
LINEAR_STRONG_REG_HELP = (
    "Regularisation of a second CCA merged into the linear branch with the one picked on the validation "
    "pairs (close to PLS: it holds up better on other drawings when the pairs number thousands); 0: the "
    "picked CCA alone."
)


def _zero_is_none(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    return value or None


#: ``--weight-average/--no-weight-average`` of ``jrs build`` and ``jrs train-mapping``.
WEIGHT_AVERAGE_HELP = (
    "Keep the mean of the weights of the best epoch and of every epoch after it until training stops "
    "(SWAD), not the best epoch's weights alone."
)


#: ``--word-grounding/--no-word-grounding`` of ``jrs build`` and ``jrs train-mapping``.
WORD_GROUNDING_HELP = (
    "Bag text tower: fit one classifier per word on the photo vectors (toolkit.mapping.grounding); a query "
    "with a word the model lacks then has its kNN candidates reranked by its known words, with a weight "
    "picked on the validation pairs (0 where it does not help them)."
)


def tower_options(config: str) -> Callable[[Callable], Callable]:
    """``--text-members``, ``--mix-share``, ``--weight-average``, ``--linear-strong-reg`` and
    ``--word-grounding`` with the
    defaults of ``config`` (the ``"module:MappingConfig"`` spec), for every command that trains the
    mapping."""
    decorators = [
        default_from(
            f"{config}.text_members", "--text-members", type=click.IntRange(min=1), help=TEXT_MEMBERS_HELP
        ),
        default_from(
            f"{config}.mix_share", "--mix-share", type=click.FloatRange(0.0, 1.0), help=MIX_SHARE_HELP
        ),
        default_from(
            f"{config}.weight_average", "--weight-average/--no-weight-average", help=WEIGHT_AVERAGE_HELP
        ),
        default_from(
            f"{config}.linear_strong_reg",
            "--linear-strong-reg",
            type=click.FloatRange(min=0.0),
            callback=_zero_is_none,
            help=LINEAR_STRONG_REG_HELP,
        ),
        default_from(
            f"{config}.word_grounding", "--word-grounding/--no-word-grounding", help=WORD_GROUNDING_HELP
        ),
    ]

    def apply(f: Callable) -> Callable:
        for decorate in reversed(decorators):
            f = decorate(f)
        return f

    return apply


def dataclass_default(spec: str) -> Any:
    """The default of ``"module:Class.field"`` (a dataclass field)."""
    module, _, attr = spec.partition(":")
    cls_name, _, field_name = attr.partition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    for f in dataclasses.fields(cls):
        if f.name == field_name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise AttributeError(f"{spec}: no dataclass field with a default")


class _DataclassDefault(click.Option):
    """An option whose (lazy) default is shown in ``--help`` as the value, not as ``(dynamic)``."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)


def default_from(spec: str, *param_decls: str, **kwargs: Any) -> Callable:
    """``click.option(*param_decls, **kwargs)`` with the default of dataclass field ``spec``."""
    kwargs.setdefault("show_default", True)
    return click.option(
        *param_decls, cls=_DataclassDefault, default=lambda: dataclass_default(spec), **kwargs
    )


def _num_candidates_help() -> str:
    from toolkit.search.queries import DEFAULT_NUM_CANDIDATES, MAX_NUM_CANDIDATES

    return (
        f"kNN candidates per shard [default: {DEFAULT_NUM_CANDIDATES}, or 10 x k when larger; "
        f"at most {MAX_NUM_CANDIDATES}]"
    )


#: ``--num-candidates``: unset, the library's rule (:func:`toolkit.search.queries.num_candidates_for`)
num_candidates_option = click.option("--num-candidates", type=int, default=None, help=_num_candidates_help())


#: ``--model``: a model directory from ``jrs build`` (or ``JRS_MODEL``)
model_option = click.option(
    "--model",
    "model_dir",
    envvar="JRS_MODEL",
    show_envvar=True,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model directory (from `jrs build`).",
)


#: ``--index``: the alias or index searched (or ``JRS_INDEX``)
def _named_index(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--index``: a blank name (``--index ""``, a ``JRS_INDEX`` of spaces) is refused by its flag (an empty
    ``JRS_INDEX`` is unset to click: the default alias)."""
    if not value.strip():
        raise click.BadParameter("empty: give an alias or index name", ctx, param)
    return value


index_option = click.option(
    "--index",
    default=DEFAULT_ALIAS,
    show_default=True,
    envvar="JRS_INDEX",
    show_envvar=True,
    callback=_named_index,
    help="Alias or index.",
)


def non_blank(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Click callback of a repeatable filter (``--recipe``, ``--ingredient``): a blank value would match
    nothing and end in "no hits"; it is refused, as `jrs delete --recipe ''` is."""
    for value in values:
        if not value.strip():
            raise click.BadParameter(f"{value!r} is blank: give a non-blank value", ctx, param)
    return values


#: ``--ingredient`` (repeatable, each non-blank): the recipe filter of `jrs search` and `jrs grid`
ingredient_option = click.option(
    "--ingredient",
    "ingredients",
    multiple=True,
    callback=non_blank,
    help="Only recipes with this ingredient. Repeatable: a recipe must have every one.",
)


def given_on_command_line(ctx: click.Context, *names: str) -> list[str]:
    """Which of the parameters ``names`` the user set (on the command line or by an environment variable),
    not left at their default: options that only apply with another one are refused when given alone."""
    from click.core import ParameterSource

    unset = (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    return [name for name in names if ctx.get_parameter_source(name) not in unset]


def writable_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Click callback for an output file written at the end of long work: refused while the options are read
    when it could not be created (its nearest existing folder is not a writable directory), not after the work."""
    if value is None:
        return value
    import os

    from toolkit.cli.common import nearest_existing_parent

    folder = nearest_existing_parent(value)
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write {value}: {folder} is not a writable directory", ctx, param)
    return value


def refuse_given(
    ctx: click.Context, options: Sequence[tuple[str, str]], verbs: tuple[str, str], reason: str
) -> None:
    """A usage error when any of ``options`` (flag, parameter name) was given where it does not apply:
    "<flags> <verb> <reason>" (``verbs``: the singular and plural verb)."""
    given = [flag for flag, name in options if given_on_command_line(ctx, name)]
    if given:
        verb = verbs[0] if len(given) == 1 else verbs[1]
        raise click.UsageError(f"{', '.join(given)} {verb} {reason}")


def refuse_without_index(
    ctx: click.Context, options: Sequence[tuple[str, str]], verbs: tuple[str, str], what: str
) -> None:
    """:func:`refuse_given` for options that need ``--index``: "<flags> <verb> <what>: add --index ALIAS"."""
    refuse_given(ctx, options, verbs, f"{what}: add --index ALIAS")
