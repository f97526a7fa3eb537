"""Plain progress lines: the time left follows the max_time budget when the run has one."""

from types import SimpleNamespace

from lightning.pytorch.callbacks import Timer

from perceiverio.training.callbacks import ProgressLog


def _trainer(step: int, max_steps: int, estimated: float, callbacks: list) -> SimpleNamespace:
    optimizer = SimpleNamespace(param_groups=[{"lr": 1e-3}])
    return SimpleNamespace(
        progress_bar_callback=None,
        is_global_zero=True,
        global_step=step,
        max_steps=max_steps,
        estimated_stepping_batches=estimated,
        callback_metrics={},
        optimizers=[optimizer],
        callbacks=callbacks,
    )


def _line(trainer, capsys) -> str:
    log = ProgressLog(every_n_steps=50)
    log.on_train_start(trainer, None)
    log._start, log._start_step = log._start - 100.0, 0  # 100 s and all steps since training started
    log.on_train_batch_end(trainer, None, {"loss": 1.0}, None, 0)
    return capsys.readouterr().out.strip()


def test_time_left_is_the_smaller_of_the_step_estimate_and_the_time_budget(capsys, monkeypatch):
    # by steps only: 100 s for 100 of 1,000 steps -> ~900 s left
    line = _line(_trainer(100, 1000, 1000, []), capsys)
    assert line.startswith("step 100/1000 (10%)") and line.endswith("100 s elapsed, ~900 s left")
    # a 5-minute budget with 200 s of it used ends the run first
    timer = Timer(duration="00:00:05:00")
    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 200.0)
    line = _line(_trainer(100, 1000, 1000, [timer]), capsys)
    assert line.endswith("~100 s left")
    # only a time budget (endless epochs): no total steps, no "inf" in the line
    line = _line(_trainer(100, -1, float("inf"), [timer]), capsys)
    assert line.startswith("step 100 loss") and "inf" not in line and line.endswith("~100 s left")
