"""Trainer options checked before Lightning reads them: the device counts, whose bad values otherwise end in a
``TypeError`` deep in Lightning's accelerator set-up, or a ``MemoryError`` (``--trainer.devices 10000000000000``
builds a list of that many CPU devices). Each problem is one ``ValueError`` naming the option."""

from __future__ import annotations

from collections.abc import Mapping

MAX_DEVICES = 4096  # devices per machine, and machines


def _count(value: object) -> int | None:
    """``value`` as an int when it is one (or a string holding one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def check_devices(value: object, option: str = "--trainer.devices") -> None:
    """``"auto"``, a count (``-1``: all GPUs), a list of device ids, or a string of ids (``"0,1"``)."""
    expected = f"expected 'auto', a count from 1 to {MAX_DEVICES} (-1: all GPUs), device ids [0, 1] or '0,1'"
    if value is None or value == "auto":
        return
    count = _count(value)
    if count is not None:
        if count == -1 or 0 < count <= MAX_DEVICES:
            return
        raise ValueError(f"{option} {value!r} is out of range; {expected}")
    ids: object = value
    if isinstance(value, str):
        ids = [_count(part) for part in value.split(",") if part.strip()]
    if isinstance(ids, (list, tuple)) and ids and all(isinstance(i, int) and 0 <= i < MAX_DEVICES for i in ids):
        return
    raise ValueError(f"{option} {value!r} is not a device choice; {expected}")


def check_trainer_options(trainer: Mapping) -> None:
    """The device and accumulation counts of a parsed ``trainer`` config, before the Trainer is built."""
    check_devices(trainer.get("devices"))
    accumulate = trainer.get("accumulate_grad_batches")
    if accumulate is not None and not (_count(accumulate) is not None and _count(accumulate) >= 1):
        raise ValueError(f"--trainer.accumulate_grad_batches {accumulate!r} must be a count of batches, at least 1")
    nodes = trainer.get("num_nodes")
    if nodes is not None and not (_count(nodes) is not None and 0 < _count(nodes) <= MAX_DEVICES):
        raise ValueError(f"--trainer.num_nodes {nodes!r} must be a count of machines from 1 to {MAX_DEVICES}")
