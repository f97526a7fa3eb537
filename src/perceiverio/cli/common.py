"""What the commands share: constants, the packaged configs, one-line error text."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
CONFIG_FLAGS = ("--config", "-c", "--model", "--model.class_path")
CKPT_NAMES = ("last", "best", "hpc", "registry")  # --ckpt_path values Lightning resolves itself
DEFAULT_ROOT = "runs"  # trainer.default_root_dir: every output of fit goes under it unless an option names a folder
MODEL_FILES = ("config.json", "model.safetensors")


def packaged_config(name: str) -> Path:
    """Path of a YAML config shipped inside the package (``configs/<name>.yaml`` in the repository)."""
    path = Path(str(resources.files("perceiverio") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise SystemExit(f"perceiverio: no packaged config {name!r}")
    return path


def first_line(error: BaseException) -> str:
    """The informative line of an error; jsonargparse wraps a class's own error in a list of union attempts, whose
    first line ("Problem with given class_path ...:") is continued by the more indented lines below it."""
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        text = line.strip()
        if not text.startswith("- ") or text[2:].startswith(("Expected a ", "Given value", "Does not validate")):
            continue
        cause, indent = text[2:], len(line) - len(line.lstrip())
        for detail in lines[i + 1 :]:
            if not cause.endswith(":") or len(detail) - len(detail.lstrip()) <= indent:
                break
            cause += " " + detail.strip()
        return cause
    return lines[0].strip() if lines else type(error).__name__
