"""Lazy package attributes: the module ``__getattr__`` (PEP 562) of :mod:`perceiverio.data` and
:mod:`perceiverio.training`, which import a name's submodule (and with it Lightning) on the name's first use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, submodules: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that imports ``name`` from its submodule ``submodules[name]`` on first use
    and keeps it as an attribute of the package (later lookups do not call ``__getattr__``)."""

    def __getattr__(name: str) -> Any:
        if name not in submodules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{submodules[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
