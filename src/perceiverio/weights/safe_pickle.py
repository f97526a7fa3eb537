"""A pickle reader for checkpoints that refuses to run code.

``pickle.load`` calls whatever callable the file names, so a downloaded ``.pickle`` can run arbitrary code on load.
:func:`load_pickle` resolves only the globals that plain containers of numpy arrays need; any other global (for
example ``os.system``, ``builtins.eval``, a jax ``Array`` class or Haiku's ``FlatMapping``) is refused with a
``ValueError`` *before* anything is called.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

# (module, name) pairs that numpy arrays, dtypes and scalars pickle through (numpy 1.x and 2.x module paths).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # array bytes pickled with protocol 2
        ("collections", "OrderedDict"),
    }
)


class SafeUnpickler(pickle.Unpickler):
    """An ``Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            hint = ""
            if module.startswith(("haiku", "jax")):
                hint = (
                    ". The file holds Haiku/jax objects: in an environment with haiku installed, re-save it as "
                    "plain dicts of numpy arrays, e.g. pickle.dump(jax.device_get("
                    "hk.data_structures.to_mutable_dict(params)), f)"
                )
            raise ValueError(
                f"refusing to unpickle {module}.{name}: only plain containers (dict, list, tuple, OrderedDict) and "
                f"numpy arrays are accepted in a checkpoint pickle{hint}"
            )
        if module == "numpy":
            return getattr(np, name)
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy 1.x pickle read by numpy 2
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle of nested plain containers and numpy arrays (e.g. DeepMind's Haiku ``params``)."""
    with open(path, "rb") as f:
        return SafeUnpickler(f).load()
