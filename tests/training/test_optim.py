"""LAMB against the optax closed form, decay groups, schedules, updates inside backward."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from perceiverio.tasks import MaskedLanguageModel, MaskedLanguageModelConfig
from perceiverio.training.optim import (
    Lamb,
    LRSchedule,
    StepInBackward,
    budget_lr_factor,
    build_optimizer,
    lr_factor,
    param_groups,
    param_shapes,
    unwrapped_name,
)


def _reference_lamb(w, grads, lr, b1=0.9, b2=0.999, eps=1e-6, wd=0.0):
    """optax.lamb written out in numpy (float64)."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * w
        wn, un = np.linalg.norm(w), np.linalg.norm(u)
        r = wn / un if wn > 0 and un > 0 else 1.0
        w = w - lr * r * u
    return w


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lamb_matches_optax_formula(wd):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(5)]
    p = nn.Parameter(torch.tensor(w0))
    opt = Lamb([p], lr=0.01, weight_decay=wd)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), _reference_lamb(w0, grads, 0.01, wd=wd), rtol=1e-10, atol=1e-12)


def test_lamb_zero_weights_use_unit_trust_ratio():
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    p.grad = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    Lamb([p], lr=0.1).step()
    # first Adam step: m̂/√v̂ = sign(g) (up to eps), ratio 1
    np.testing.assert_allclose(p.detach().numpy(), [-0.1, 0.1, -0.1], rtol=1e-5)


def test_no_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3  # linear bias, norm weight, norm bias


def test_decay_groups_follow_the_original_shapes_of_sharded_parameters():
    """FSDP (``use_orig_params=True``) makes every parameter a 1-D view of its shard: the decay groups must come
    from the shapes recorded before wrapping, and LAMB (a norm per whole parameter) is refused."""
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    shapes = param_shapes(model)
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.flatten()[: max(1, p.numel() // 2)]  # this rank's half, flat
    decay, no_decay = param_groups(model, 0.1, shapes)
    assert [p is model[0].weight for p in decay["params"]] == [True] and len(no_decay["params"]) == 3
    assert isinstance(build_optimizer(model, "adamw", weight_decay=0.1, shapes=shapes), torch.optim.AdamW)
    with pytest.raises(ValueError, match="lamb needs whole parameters"):
        build_optimizer(model, "lamb", shapes=shapes)
    assert unwrapped_name("encoder._fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.w") == "encoder.layers.0.w"


def test_build_optimizer_names():
    model = nn.Linear(2, 2)
    assert isinstance(build_optimizer(model, "lamb"), Lamb)
    assert isinstance(build_optimizer(model, "adamw"), torch.optim.AdamW)
    with pytest.raises(ValueError, match="lamb"):
        build_optimizer(model, "sgd")


def test_schedules():
    assert [lr_factor(s, 10, "warmup_cosine", warmup_steps=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, "warmup_cosine", warmup_steps=4) == 1.0
    assert lr_factor(7, 10, "warmup_cosine", warmup_steps=4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(10, 10, "warmup_cosine", warmup_steps=4) == pytest.approx(0.0)
    assert all(lr_factor(s, 100, "constant_cosine") == 1.0 for s in range(50))
    assert lr_factor(75, 100, "constant_cosine") == pytest.approx(0.5)
    assert lr_factor(3, 10, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, "linear")


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_step_in_backward_gives_the_usual_updates(name):
    """Same weights and optimiser state as backward() + step() over a warm-up schedule, with tied weights (the MLM's
    embedding is its output layer), weight decay groups and gradient checkpointing (which recomputes layers in
    backward, after later layers were already updated)."""
    torch.manual_seed(0)
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny(max_seq_len=32))
    model.encoder.gradient_checkpointing = True
    ids = torch.randint(6, 262, (3, 32))
    labels = torch.where(torch.rand(3, 32) < 0.3, ids, torch.full_like(ids, -100))
    runs = []
    for in_backward in (False, True):
        m = copy.deepcopy(model)
        opt = build_optimizer(m, name, lr=3e-3, weight_decay=0.1)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (step + 1) / 3)
        hooks = StepInBackward(opt) if in_backward else None
        for _ in range(3):
            opt.zero_grad()
            before = m.input_adapter.token_embedding.weight.detach().clone()
            m(ids.masked_fill(labels != -100, 3), labels=labels).loss.backward()
            if in_backward:  # already updated, and no gradient kept
                assert not torch.equal(before, m.input_adapter.token_embedding.weight)
                assert all(p.grad is None for p in m.parameters())
            opt.step()
            schedule.step()
        if hooks is not None:
            hooks.remove()
        runs.append((m, opt))
    (a, opt_a), (b, opt_b) = runs
    for (key, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=key)
    steps = {int(torch.as_tensor(s["step"])) for s in opt_b.state.values()}
    assert steps == {3} and len(opt_b.state) == len(opt_a.state)


def test_step_in_backward_remove_restores_plain_backward():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with StepInBackward(opt):
        model(torch.randn(3, 4)).sum().backward()
        assert model.weight.grad is None
    before = model.weight.detach().clone()
    model(torch.randn(3, 4)).sum().backward()  # hooks removed: a plain gradient, no update
    assert model.weight.grad is not None and torch.equal(before, model.weight)


def test_budget_schedule_is_the_step_schedule_when_progress_counts_steps():
    total, warmup = 20, 5
    for step in range(total + 1):
        by_budget = budget_lr_factor(step, step / total, "warmup_cosine", warmup, warmup / total)
        assert by_budget == pytest.approx(lr_factor(step, total, "warmup_cosine", warmup), abs=1e-12)
    # constant_cosine: flat to the fraction, then the closed-form cosine of the remaining share
    assert budget_lr_factor(3, 0.49, "constant_cosine", constant_fraction=0.5) == 1.0
    assert budget_lr_factor(3, 0.75, "constant_cosine", constant_fraction=0.5) == pytest.approx(0.5)
    assert budget_lr_factor(3, 1.0, "constant_cosine", constant_fraction=0.5) == pytest.approx(0.0)
    assert budget_lr_factor(3, 0.3, "constant") == 1.0


def test_timed_schedule_anneals_over_the_time_budget():
    schedule = LRSchedule(float("inf"), "warmup_cosine", warmup_steps=2, timed=True)
    assert [schedule(0), schedule(1)] == [0.5, 1.0]  # warm-up counts steps
    schedule.time_fraction = 0.2
    assert schedule(2) == 1.0  # warm-up ended at 20% of the budget: the cosine starts there
    assert schedule.warmup_progress == 0.2
    schedule.time_fraction = 0.6
    assert schedule(50) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    schedule.time_fraction = 1.0
    assert schedule(90) == pytest.approx(0.0)
    # a step limit reached before the time limit wins: progress is the larger of the two
    both = LRSchedule(10, "constant_cosine", constant_fraction=0.0, timed=True)
    both.time_fraction = 0.1
    assert both(5) == pytest.approx(0.5)
    # untimed: exactly lr_factor; the checkpointed state is plain numbers
    plain = LRSchedule(10, "warmup_cosine", warmup_steps=3)
    assert [plain(s) for s in range(11)] == [lr_factor(s, 10, "warmup_cosine", 3) for s in range(11)]
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in vars(both).values())
