"""Lazily imported package names (PEP 562): ``import toolkit`` or ``import toolkit.mapping`` stays cheap, and
a name loads its module (torch, the Elasticsearch client) on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``exports`` (name -> ``module`` or
    ``module:attribute``) is imported on first use and kept in ``namespace`` (the package's globals); any
    other name is an :class:`AttributeError`."""

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        namespace[name] = value
        return value

    return __getattr__
