"""``perceiverio --help`` and ``--version``: the command list, one line per entry of ``COMMANDS``, each taken from
its module's docstring (the first sentence: its usage line and what it does)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

LIGHTNING_SUMMARIES = {
    "fit": "train a model (LightningCLI: --config CONFIG.yaml, dotted overrides such as --trainer.max_steps N)",
    "validate": "score a trained model on the validation split (--config, --ckpt_path)",
    "test": "score a trained model on the test split (--config, --ckpt_path)",
    "predict": "run a trained model on files and write its outputs (--config, --ckpt_path, --data.predict_path)",
}
"""The LightningCLI commands share one module; their lines are these."""


def summary(name: str, command: Callable[..., object]) -> str:
    """One line saying what ``command`` does: the first sentence of its module's docstring, without the
    reST quotes (the Lightning commands: :data:`LIGHTNING_SUMMARIES`)."""
    if name in LIGHTNING_SUMMARIES and getattr(command, "__module__", "").endswith(".lightning"):
        return LIGHTNING_SUMMARIES[name]
    doc = getattr(sys.modules.get(getattr(command, "__module__", ""), None), "__doc__", None) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".").replace("``", "")
    return sentence.split(": ", 1)[-1] or "(no description)"  # what it does; its usage is under COMMAND --help


def command_list(commands: Mapping[str, Callable[..., object]]) -> str:
    """``usage`` and one line per command, in ``commands`` order."""
    width = max(map(len, commands), default=0)
    lines = ["usage: perceiverio COMMAND [ARGS]   (perceiverio COMMAND --help: its options)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary(name, fn)}" for name, fn in commands.items()]
    lines += ["", "options:", f"  {'--help'.ljust(width)}  this list", f"  {'--version'.ljust(width)}  the version"]
    return "\n".join(lines)


def version() -> str:
    """``perceiverio X.Y.Z`` (the package's ``__version__``)."""
    import perceiverio

    return f"perceiverio {perceiverio.__version__}"
