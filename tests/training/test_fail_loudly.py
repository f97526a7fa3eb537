"""Failing loudly: a non-finite loss or gradient stops training (or skips the step), non-finite weights are never
written, output folders are checked before the first step, and interrupted writes leave no temporary files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers import cpu_trainer
from torch import nn

from perceiverio.tasks import MaskedLanguageModel, MaskedLanguageModelConfig
from perceiverio.training.callbacks import ExportCallback, NonFiniteError, NonFiniteGuard
from perceiverio.training.outputs import check_folder
from perceiverio.weights.checkpoint import finite_flag, first_non_finite, remove_stale_temporaries, save_pretrained

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # chmod does not restrict root


class Tiny(L.LightningModule):
    """A linear regression whose loss is NaN at the batches in ``nan_at`` (0-based), or whose weight gradient is
    infinite (with a finite loss) at those in ``inf_grad_at``."""

    def __init__(self, nan_at=(), inf_grad_at=(), step_in_backward: bool = False) -> None:
        super().__init__()
        self.model = nn.Linear(4, 1)
        self.nan_at, self.inf_grad_at = set(nan_at), set(inf_grad_at)
        self.optimizer_config = SimpleNamespace(step_in_backward=step_in_backward)

    def training_step(self, batch, batch_idx):
        loss = self.model(batch).pow(2).mean()
        if batch_idx in self.nan_at:
            loss = loss * float("nan")
        if batch_idx in self.inf_grad_at:  # sqrt at 0: value 0, gradient infinite
            w = self.model.weight
            loss = loss + torch.sqrt(w - w.detach()).sum()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data(n: int = 8) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.randn(n, 4), batch_size=1)


def weights(module: Tiny) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def test_a_nan_loss_stops_before_the_update_with_the_step_and_advice():
    module, seen = Tiny(nan_at={2}), []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(weights(pl_module))

    with pytest.raises(NonFiniteError) as e:
        cpu_trainer(max_steps=6, callbacks=[NonFiniteGuard(), Record()]).fit(module, data())
    msg = str(e.value)
    assert "\n" not in msg and "step 3" in msg and "loss nan" in msg and "learning rate" in msg, msg
    assert "gradient_clip_val" in msg and "bf16" in msg and "--nonfinite.action skip" in msg
    assert len(seen) == 2 and torch.equal(weights(module), seen[-1])  # step 3 applied nothing
    assert torch.isfinite(weights(module)).all()


def test_an_infinite_gradient_names_the_parameter():
    with pytest.raises(NonFiniteError, match=r"step 2 .*first non-finite gradient: weight") as e:
        cpu_trainer(max_steps=4, callbacks=[NonFiniteGuard()]).fit(Tiny(inf_grad_at={1}), data())
    assert "loss nan" not in str(e.value)  # the loss itself was finite


def test_skip_drops_the_step_and_trains_on():
    module, guard = Tiny(nan_at={2, 5}), NonFiniteGuard(action="skip")
    trainer = cpu_trainer(max_steps=8, callbacks=[guard], log_every_n_steps=1)
    trainer.fit(module, data())
    assert trainer.global_step == 8 and guard.skipped == 2
    assert float(trainer.callback_metrics["train/skipped_steps"]) == 2.0
    assert torch.isfinite(weights(module)).all()


def test_skip_stops_after_max_skips_in_a_row():
    guard = NonFiniteGuard(action="skip", max_skips=3)
    with pytest.raises(NonFiniteError, match=r"3 steps in a row skipped \(nonfinite.max_skips=3\)"):
        cpu_trainer(max_steps=8, callbacks=[guard]).fit(Tiny(nan_at={1, 2, 3, 4}), data())


def test_under_a_loss_scaler_the_guard_counts_and_stops_after_max_skips():
    """16-mixed precision's GradScaler skips overflowing steps itself (a GPU-only path; a stand-in scaler here):
    the guard leaves the gradients alone, counts, and stops only after max_skips in a row."""
    guard, module = NonFiniteGuard(max_skips=2), Tiny(nan_at={1})
    trainer = cpu_trainer(max_steps=8, callbacks=[guard])
    trainer.precision_plugin.scaler = "a stand-in GradScaler"  # which, unlike a GradScaler, skips nothing
    with pytest.raises(NonFiniteError, match=r"step 3 .*2 steps in a row skipped \(nonfinite.max_skips=2\)"):
        trainer.fit(module, data())
    assert guard.skipped == 2 and not torch.isfinite(weights(module)).all()  # the gradients were left to the scaler


def test_step_in_backward_checks_the_loss_before_backward_and_refuses_skip():
    module = Tiny(nan_at={1}, step_in_backward=True)
    with pytest.raises(NonFiniteError, match="step 2"):
        cpu_trainer(max_steps=4, callbacks=[NonFiniteGuard()]).fit(module, data())
    assert all(p.grad is None for p in module.parameters())  # stopped before backward
    with pytest.raises(ValueError, match="nonfinite.action=skip cannot be combined with optimizer.step_in_backward"):
        cpu_trainer(max_steps=4, callbacks=[NonFiniteGuard("skip")]).fit(Tiny(step_in_backward=True), data())
    with pytest.raises(ValueError, match="nonfinite.action must be 'stop' or 'skip', got 'ignore'"):
        NonFiniteGuard("ignore")


def test_large_finite_values_are_not_mistaken_for_infinities():
    big = {"w": torch.full((4,), 1e20), "h": torch.full((3,), 300.0, dtype=torch.float16)}
    assert not bool(finite_flag([big["w"]]))  # the fused norm overflows...
    assert first_non_finite(big) is None  # ...and the search finds every value finite
    big["h"][1] = float("nan")
    assert first_non_finite(big) == "h"


def _nan_model() -> MaskedLanguageModel:
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny(max_seq_len=32))
    with torch.no_grad():
        next(iter(model.parameters()))[0, 0] = float("inf")
    return model


def test_save_pretrained_refuses_non_finite_weights(tmp_path):
    model = _nan_model()
    name = next(iter(model.state_dict()))
    with pytest.raises(ValueError, match=rf"refusing to save MaskedLanguageModel .*tensor '{name}' holds 1 NaN"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_non_finite_weights_and_exports_nothing_after_a_failure(tmp_path):
    trainer = SimpleNamespace(global_step=5, strategy=SimpleNamespace(reduce_boolean_decision=lambda d, all: d))
    export = ExportCallback(dirpath=str(tmp_path / "model"))
    with pytest.raises(NonFiniteError, match="refusing to export the model .* at step 5: tensor"):
        export.export(trainer, SimpleNamespace(model=_nan_model()))
    healthy = SimpleNamespace(model=MaskedLanguageModel(MaskedLanguageModelConfig.tiny(max_seq_len=32)))
    export.on_exception(trainer, healthy, RuntimeError("fit failed"))
    export.export(trainer, healthy)  # as on_fit_end would: nothing after a failure
    assert not (tmp_path / "model").exists()


def test_stale_temporaries_are_removed_and_a_failed_write_leaves_none(tmp_path):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny(max_seq_len=32))
    tmp_path.mkdir(exist_ok=True)
    old, fresh = tmp_path / ".model.safetensors.k2j3h4.tmp", tmp_path / ".config.json.a1b2c3.tmp"
    for f in (old, fresh):
        f.write_bytes(b"partial")  # what a killed export leaves
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    save_pretrained(model, tmp_path)
    assert not old.exists() and fresh.exists()  # another writer's may be in progress: only old ones go
    assert remove_stale_temporaries(tmp_path, older_than=0) == [fresh]  # what the export does when fit starts

    class Boom(Exception):
        pass

    def failing_save(*args, **kwargs):
        raise Boom

    import perceiverio.weights.checkpoint as checkpoint

    saved, checkpoint.save_file = checkpoint.save_file, failing_save
    try:
        with pytest.raises(Boom):
            save_pretrained(model, tmp_path)
    finally:
        checkpoint.save_file = saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.skipif(AS_ROOT, reason="chmod does not keep root from writing")
def test_a_read_only_folder_is_refused_with_the_option(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=r"export.dirpath '.*ro/model' cannot be created \(Permission denied\)"):
            check_folder(ro / "model", "export.dirpath")
        with pytest.raises(ValueError, match=r"checkpoint.dirpath '.*ro' is not writable \(Permission denied\)"):
            check_folder(ro, "checkpoint.dirpath")
        with pytest.raises(ValueError, match=r"cannot be created in '.*ro'"):
            check_folder(ro / "a" / "b", "the export folder", create=False)
    finally:
        ro.chmod(0o755)


def test_a_folder_that_refuses_writing_is_named(tmp_path, monkeypatch):
    """What a read-only folder does, also where the tests run as root (whom chmod does not restrict)."""

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ValueError, match=r"trainer.default_root_dir '.*ro' is not writable \(Permission denied\)"):
        check_folder(tmp_path / "ro", "trainer.default_root_dir")
    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(ValueError, match=r"export.dirpath '.*ro/model' cannot be created \(Permission denied\)"):
        check_folder(tmp_path / "ro" / "model", "export.dirpath")


def test_a_file_in_the_way_is_refused_and_a_good_folder_is_left_clean(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint.dirpath '.*taken' cannot be a folder: a file is in the way"):
        check_folder(tmp_path / "taken", "checkpoint.dirpath")
    with pytest.raises(ValueError, match=r"inside '.*taken', which: a file is in the way"):
        check_folder(tmp_path / "taken" / "sub", "export.dirpath")
    check_folder(tmp_path / "new" / "model", "export.dirpath")
    check_folder(tmp_path / "later" / "model", "export folder", create=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["new", "new/model", "taken"]


def test_the_export_folder_is_checked_when_fit_sets_up(tmp_path):
    (tmp_path / "taken").write_text("x")
    export = ExportCallback(dirpath=str(tmp_path / "taken"))
    with pytest.raises(ValueError, match="export.dirpath .* a file is in the way"):
        cpu_trainer(max_steps=1, callbacks=[export]).fit(Tiny(), data())
    assert Path(tmp_path / "taken").read_text() == "x"
