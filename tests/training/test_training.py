"""Lightning task modules: training lowers the loss, metrics match hand computations, resume, DDP, export, bf16."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import cpu_trainer as trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from perceiverio.core.config import DecoderConfig, EncoderConfig
from perceiverio.data.sampling import ListDataset
from perceiverio.data.sampling import loader as resumable_loader
from perceiverio.tasks import (
    ImageClassifier,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultimodalAutoencoder,
    MultitaskClassifierConfig,
    OpticalFlow,
    SequenceClassifierConfig,
)
from perceiverio.training import (
    ExportCallback,
    ImageClassificationTask,
    MaskedLanguageModelTask,
    MultimodalAutoencodingTask,
    MultitaskClassificationTask,
    OpticalFlowTask,
    OptimizerConfig,
    SequenceClassificationTask,
)
from perceiverio.training.augment import ImageAugmentation
from perceiverio.training.metrics import end_point_error, psnr
from perceiverio.training.optim import Lamb, lr_factor

HERE = Path(__file__).resolve().parent  # tests/training: the DDP worker script sits beside this file
FAST = OptimizerConfig(lr=3e-3, schedule="constant")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# text models smaller than the .tiny() presets, to keep this file fast on 2 cores
_ENCODER = EncoderConfig(
    num_latents=16,
    num_latent_channels=64,
    num_cross_attention_heads=2,
    num_self_attention_heads=2,
    num_self_attends_per_block=2,
)
_QUERY = DecoderConfig(num_query_channels=64, num_heads=1, use_query_residual=True)
MLM = MaskedLanguageModelConfig.tiny(max_seq_len=64, encoder=_ENCODER)
SEQ = SequenceClassifierConfig.tiny(max_seq_len=64, encoder=_ENCODER, decoder=_QUERY)
MULTI = MultitaskClassifierConfig.tiny(max_seq_len=64, encoder=_ENCODER, decoder=_QUERY)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two OpenMP threads that wait
    for each other make every step many times slower; restored after this file."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def loader(examples: list, batch_size: int | None = None) -> DataLoader:
    return DataLoader(examples, batch_size=batch_size or len(examples), shuffle=False)


def batch_of(examples: list) -> dict:
    return next(iter(loader(examples)))


def batches(*items: dict) -> DataLoader:
    """One dataloader yielding the given (already collated) batches in order."""
    return DataLoader(list(items), batch_size=None)


# ---------------------------------------------------------------------------------------------- synthetic data
def mlm_examples(n: int, length: int = 24, seed: int = 0, pad: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(6, 262, (length,), generator=g)
        masked = torch.rand(length, generator=g) < 0.3
        masked[i % length] = True
        mask = torch.ones(length, dtype=torch.long)
        if pad:
            ids[-pad:], masked[-pad:], mask[-pad:] = 0, False, 0
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        out.append({"input_ids": ids.masked_fill(masked, 4), "attention_mask": mask, "labels": labels})
    return out


def cls_examples(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(6, 262, (16,), generator=g),
            "attention_mask": torch.ones(16, dtype=torch.long),
            "labels": torch.tensor(i % 2),
        }
        for i in range(n)
    ]


def multitask_examples(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(6, 262, (16,), generator=g),
            "attention_mask": torch.ones(16, dtype=torch.long),
            "labels": {"a": torch.tensor(i % 2), "b": torch.tensor(i % 3 if i % 4 else -100)},
        }
        for i in range(n)
    ]


def image_examples(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"images": torch.rand(3, 32, 32, generator=g), "labels": torch.tensor(i % 10)} for i in range(n)]


def flow_examples(n: int, seed: int = 0) -> list[dict]:
    """Random frames with a smooth (learnable) flow field per example, 80% valid pixels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        u, v = (torch.rand(2, generator=g) * 4 - 2).tolist()
        ramp = torch.linspace(-0.5, 0.5, 32).expand(24, 32)
        out.append(
            {
                "frames": torch.rand(2, 3, 24, 32, generator=g) * 2 - 1,
                "flow": torch.stack([u + ramp, v - ramp]),
                "valid": torch.rand(24, 32, generator=g) > 0.2,
            }
        )
    return out


def multimodal_examples(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.rand(4, 3, 16, 16, generator=g),
            "audio": torch.randn(128, 1, generator=g),
            "label": F.one_hot(torch.tensor(i % 5), 5).float(),
        }
        for i in range(n)
    ]


# ------------------------------------------------------------------------------------- loss on a fixed batch
@torch.no_grad()
def fixed_loss(module, batch) -> float:
    module.eval()
    m = module.model
    if isinstance(module, MaskedLanguageModelTask):
        loss = m(batch["input_ids"], batch["attention_mask"], batch["labels"]).loss
    elif isinstance(module, (SequenceClassificationTask, MultitaskClassificationTask)):
        loss = m(batch["input_ids"], batch["attention_mask"], batch["labels"]).loss
    elif isinstance(module, ImageClassificationTask):
        loss = m(batch["images"], batch["labels"]).loss
    elif isinstance(module, OpticalFlowTask):
        loss = end_point_error(m(batch["frames"]), batch["flow"])[batch["valid"]].mean()
    else:
        loss = m.loss(m(batch), m.targets(batch)).loss
    module.train()
    return float(loss)


CASES = {
    "mlm": (lambda: MaskedLanguageModelTask(MLM, optimizer=FAST), lambda: mlm_examples(4)),
    "sequence": (lambda: SequenceClassificationTask(SEQ, optimizer=FAST), lambda: cls_examples(8)),
    "multitask": (lambda: MultitaskClassificationTask(MULTI, optimizer=FAST), lambda: multitask_examples(8)),
    "image": (lambda: ImageClassificationTask(optimizer=FAST, label_smoothing=0.1), lambda: image_examples(8)),
    "flow": (lambda: OpticalFlowTask(optimizer=FAST), lambda: flow_examples(2)),
    "multimodal": (
        lambda: MultimodalAutoencodingTask(optimizer=FAST, train_points={"image": 128, "audio": 8}),
        lambda: multimodal_examples(4),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_training_lowers_the_loss(name):
    L.seed_everything(0, verbose=False)
    make_module, make_data = CASES[name]
    module, examples = make_module(), make_data()
    batch = batch_of(examples)
    before = fixed_loss(module, batch)
    trainer(max_steps=20).fit(module, loader(examples))
    after = fixed_loss(module, batch)
    assert math.isfinite(after) and after < 0.9 * before, (name, before, after)


# -------------------------------------------------------------------------------------------------- metrics
def test_mlm_metrics_sum_over_labelled_bytes():
    L.seed_everything(0, verbose=False)
    module = MaskedLanguageModelTask(MLM, decode_labeled_only=True)
    # two batches with different numbers of labelled bytes (and padding): a mean of batch means would differ
    data = [batch_of(mlm_examples(3, seed=1, pad=5)), batch_of(mlm_examples(2, seed=2))]
    data[1]["labels"][:, 6:] = -100
    metrics = trainer(limit_val_batches=None).validate(module, batches(*data), verbose=False)[0]
    nats = correct = count = 0.0
    module.model.eval()
    with torch.no_grad():
        for b in data:  # every position decoded (not only the labelled ones), then the labelled ones picked
            logits = module.model(b["input_ids"], b["attention_mask"]).logits
            keep = b["labels"] != -100
            nats += float(F.cross_entropy(logits[keep], b["labels"][keep], reduction="sum"))
            correct += float((logits[keep].argmax(-1) == b["labels"][keep]).sum())
            count += float(keep.sum())
    assert metrics["val/loss"] == pytest.approx(nats / count, rel=1e-5)
    assert metrics["val/bits_per_byte"] == pytest.approx(nats / count / math.log(2), rel=1e-5)
    assert metrics["val/masked_byte_acc"] == pytest.approx(correct / count, abs=1e-7)


def test_classification_accuracies():
    L.seed_everything(0, verbose=False)
    seq, multi = SequenceClassificationTask(SEQ), MultitaskClassificationTask(MULTI)
    data = [batch_of(cls_examples(5, seed=3)), batch_of(cls_examples(3, seed=4))]
    data[0]["labels"][0] = -100
    got = trainer(limit_val_batches=None).validate(seq, batches(*data), verbose=False)[0]
    seq.model.eval()
    with torch.no_grad():
        hits = [(seq.model(b["input_ids"]).logits.argmax(-1) == b["labels"])[b["labels"] != -100] for b in data]
    assert got["val/acc"] == pytest.approx(float(torch.cat(hits).float().mean()), abs=1e-7)

    data = [batch_of(multitask_examples(6, seed=5)), batch_of(multitask_examples(4, seed=6))]
    got = trainer(limit_val_batches=None).validate(multi, batches(*data), verbose=False)[0]
    multi.model.eval()
    accs = {}
    with torch.no_grad():
        for task in ("a", "b"):
            hits = []
            for b in data:
                y = b["labels"][task]
                hits.append((multi.model(b["input_ids"]).logits[task].argmax(-1) == y)[y != -100])
            accs[task] = float(torch.cat(hits).float().mean())
    assert got["val/acc_a"] == pytest.approx(accs["a"], abs=1e-7)
    assert got["val/acc_b"] == pytest.approx(accs["b"], abs=1e-7)
    assert got["val/acc"] == pytest.approx((accs["a"] + accs["b"]) / 2, abs=1e-6)


def test_epe_closed_form():
    flow = torch.zeros(1, 2, 3, 4)
    target = torch.stack([torch.full((3, 4), 3.0), torch.full((3, 4), -4.0)])[None]
    assert torch.allclose(end_point_error(flow, target), torch.full((1, 3, 4), 5.0))
    module = OpticalFlowTask()
    module.model.forward = lambda frames, chunk_size=None: torch.zeros(frames.shape[0], 2, *frames.shape[-2:])
    b1 = batch_of(flow_examples(2))
    b1["flow"] = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(2, 2, 24, 32).clone()  # EPE 5 everywhere
    b1["valid"][:] = True
    b2 = batch_of(flow_examples(1, seed=1))
    b2["flow"] = torch.tensor([6.0, -8.0]).view(1, 2, 1, 1).expand(1, 2, 24, 32).clone()  # EPE 10 on 7 pixels
    b2["valid"][:] = False
    b2["valid"][0, 0, :7] = True
    got = trainer(limit_val_batches=None).validate(module, batches(b1, b2), verbose=False)[0]
    n1 = 2 * 24 * 32
    assert got["val/epe"] == pytest.approx((5.0 * n1 + 10.0 * 7) / (n1 + 7), rel=1e-6)


def test_psnr_uses_the_target_range():
    target = torch.linspace(-1, 1, 50).repeat(2, 1)
    target[1] = 0.5  # constant: undefined
    value, defined = psnr(target + 0.1, target)
    assert defined.tolist() == [True, False]
    assert float(value[0]) == pytest.approx(10 * math.log10(2.0**2 / 0.01), rel=1e-5)


def test_multimodal_validation_metrics():
    L.seed_everything(0, verbose=False)
    module = MultimodalAutoencodingTask()
    data = [batch_of(multimodal_examples(2)), batch_of(multimodal_examples(3, seed=1))]
    got = trainer(limit_val_batches=None).validate(module, batches(*data), verbose=False)[0]
    module.model.eval()
    expected = {"image": [], "audio": [], "label": []}
    with torch.no_grad():
        for b in data:
            recon = module.model.reconstruct(b)
            for name in ("image", "audio"):
                p = recon[name].reshape(len(recon[name]), -1).double().numpy()
                t = b[name].reshape(len(b[name]), -1).double().numpy()
                r = t.max(1) - t.min(1)
                expected[name] += list(10 * np.log10(r**2 / ((p - t) ** 2).mean(1)))
            expected["label"] += (recon["label"].argmax(-1) == b["label"].argmax(-1)).tolist()
    assert got["val/psnr_image"] == pytest.approx(np.mean(expected["image"]), rel=1e-4)
    assert got["val/psnr_audio"] == pytest.approx(np.mean(expected["audio"]), rel=1e-4)
    assert got["val/acc_label"] == pytest.approx(np.mean(expected["label"]), abs=1e-6)
    assert math.isfinite(got["val/loss"])


def test_multimodal_training_points_are_seeded_by_step():
    module = MultimodalAutoencodingTask(train_points={"image": 100, "audio": 4}, seed=3)
    a, b = module.sample_points(2, 0), module.sample_points(2, 0)
    assert a["label"] is None and a["image"].shape == (2, 100) and a["audio"].shape == (2, 4)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["audio"], b["audio"])
    assert len(set(a["image"][0].tolist())) == 100 and int(a["image"].max()) < 4 * 16 * 16
    assert not torch.equal(module.sample_points(2, 1)["image"], a["image"])
    with pytest.raises(ValueError, match="train_points"):
        MultimodalAutoencodingTask(train_points={"video": 10})


def test_image_augmentation_mixup_cutmix_soft_labels():
    torch.manual_seed(0)
    aug = ImageAugmentation(10, randaugment=True, mixup_alpha=0.2, cutmix_alpha=1.0)
    images, labels = torch.rand(8, 3, 32, 32), torch.arange(8)
    out, targets = aug(images, labels)
    assert out.shape == images.shape and targets.shape == (8, 10)
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert all(int((row > 0).sum()) <= 2 for row in targets)
    # every row mixes its own label with one other: the own label keeps a share
    assert all(float(targets[i, i]) > 0 for i in range(8) if float(targets[i].max()) < 1)
    only_cutmix = ImageAugmentation(10, cutmix_alpha=1.0)
    x = torch.arange(4, dtype=torch.float).view(4, 1, 1, 1).expand(4, 3, 8, 8).clone()
    out, targets = only_cutmix(x, torch.arange(4))
    for i in range(4):  # the label shares are the pixel shares of each source image
        share = [(out[i, 0] == j).float().mean() for j in range(4)]
        assert torch.allclose(targets[i, :4], torch.stack(share), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageAugmentation(10, randaugment=True)(images * 2 - 1, labels)
    unchanged, ids = ImageAugmentation(10)(images, labels)
    assert unchanged is images or torch.equal(unchanged, images)
    assert ids is labels


# ---------------------------------------------------------------------------------------- optimiser recipes
def test_a_run_capped_by_max_time_anneals_the_rate_over_its_time_budget(monkeypatch):
    """trainer.max_time with no step limit: the schedule follows elapsed / budget and ends at 0 when the cap stops
    the run. A fake clock makes each step take 10 s of a 40 s budget (the clock moves at each forward)."""
    from lightning.pytorch.callbacks import Timer

    config = OptimizerConfig(lr=1e-2, schedule="constant_cosine", constant_fraction=0.0)
    module = MaskedLanguageModelTask(MLM, optimizer=config)
    forwards = []
    module.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 10.0 * len(forwards))
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    t = trainer(max_time={"seconds": 40}, callbacks=[Record()])
    t.fit(module, loader(mlm_examples(2) * 8, batch_size=2))
    assert t.global_step == 4  # stopped by the time cap, not by the data (8 batches per epoch, endless epochs)
    assert seen == pytest.approx([1e-2 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)])
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed at the cap


def test_lr_follows_the_schedule_and_decay_skips_biases():
    config = OptimizerConfig(lr=1e-2, schedule="warmup_cosine", warmup_steps=2, weight_decay=0.1)
    module = MaskedLanguageModelTask(MLM, optimizer=config)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    t = trainer(max_steps=6, callbacks=[Record()])
    t.fit(module, loader(mlm_examples(2)))
    assert seen == pytest.approx([1e-2 * lr_factor(s, 6, "warmup_cosine", 2) for s in range(6)])
    opt = t.optimizers[0]
    assert isinstance(opt, Lamb) and [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert all(p.dim() < 2 for p in opt.param_groups[1]["params"])
    module = SequenceClassificationTask(SEQ, optimizer=OptimizerConfig(name="adamw", schedule="constant_cosine"))
    t = trainer(max_steps=1)
    t.fit(module, loader(cls_examples(2)))
    assert isinstance(t.optimizers[0], torch.optim.AdamW)
    with pytest.raises(ValueError, match="schedule"):
        OptimizerConfig(schedule="linear")


def test_tasks_build_from_yaml():
    from jsonargparse import ArgumentParser

    classes = [
        MaskedLanguageModelTask,
        SequenceClassificationTask,
        MultitaskClassificationTask,
        ImageClassificationTask,
        OpticalFlowTask,
        MultimodalAutoencodingTask,
    ]
    for cls in classes:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "task")
        yaml = "task:\n  optimizer:\n    name: adamw\n    lr: 0.002\n  encoder:\n    num_latents: 8\n"
        if cls is MultimodalAutoencodingTask:
            yaml += "  train_points: {image: 64, audio: 4}\n"
        if cls is ImageClassificationTask:
            yaml += "  mixup_alpha: 0.2\n  randaugment: true\n"
        module = parser.instantiate(parser.parse_string(yaml)).task
        assert isinstance(module, cls)
        assert module.optimizer_config == OptimizerConfig(name="adamw", lr=0.002)
        assert module.model.config.encoder.num_latents == 8


def test_gradient_checkpointing_gives_the_same_gradients():
    L.seed_everything(0, verbose=False)
    plain = MaskedLanguageModelTask(MLM)
    ckpt = MaskedLanguageModelTask(MLM, gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.model.encoder.gradient_checkpointing and not plain.model.encoder.gradient_checkpointing
    assert ckpt.model.decoder.gradient_checkpointing and not plain.model.decoder.gradient_checkpointing
    b = batch_of(mlm_examples(2))
    for m in (plain, ckpt):
        m(b["input_ids"], b["attention_mask"], labels=b["labels"]).loss.backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_step_in_backward_trains_like_the_plain_step():
    runs = []
    for in_backward in (False, True):
        L.seed_everything(0, verbose=False)
        config = OptimizerConfig(lr=3e-3, warmup_steps=2, step_in_backward=in_backward)
        module = MaskedLanguageModelTask(MLM, optimizer=config)
        initial = final_weights(module)
        t = trainer(max_steps=3)
        t.fit(module, loader(mlm_examples(6), 2))
        assert t.global_step == 3
        runs.append(final_weights(module))
    a, b = runs
    assert not torch.equal(a["input_adapter.token_embedding.weight"], initial["input_adapter.token_embedding.weight"])
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # the hooks are gone after fit: a later backward leaves gradients and weights alone
    before = final_weights(module)
    batch = batch_of(mlm_examples(2))
    module(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss.backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
    assert all(torch.equal(before[k], v) for k, v in final_weights(module).items())


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"accumulate_grad_batches": 2}, "accumulate_grad_batches=2"),
        ({"gradient_clip_val": 1.0}, "gradient_clip_val=1.0"),
    ],
)
def test_step_in_backward_refuses_what_needs_every_gradient(kwargs, expected):
    module = MaskedLanguageModelTask(MLM, optimizer=OptimizerConfig(step_in_backward=True))
    with pytest.raises(ValueError, match=expected):
        trainer(max_steps=1, **kwargs).fit(module, loader(mlm_examples(2), 2))


def test_compile_switch_wraps_the_model(monkeypatch):
    calls = []

    def fake_compile(model, **kwargs):
        calls.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    module = MaskedLanguageModelTask(MLM, compile=True)
    b = batch_of(mlm_examples(2))
    module(b["input_ids"], b["attention_mask"], labels=b["labels"])
    module(b["input_ids"], b["attention_mask"], labels=b["labels"])
    assert calls == [module.model]  # compiled once, lazily
    assert set(module.state_dict()) == {f"model.{k}" for k in module.model.state_dict()}
    assert MaskedLanguageModelTask(MLM)(b["input_ids"]) is not None and len(calls) == 1


# ------------------------------------------------------------------------------ reproducibility and resume
def final_weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def test_same_seed_same_weights():
    runs = []
    for seed in (0, 0, 1):
        L.seed_everything(seed, verbose=False)
        module = ImageClassificationTask(randaugment=True, mixup_alpha=0.2, cutmix_alpha=1.0, optimizer=FAST)
        trainer(max_steps=2).fit(module, DataLoader(image_examples(8), batch_size=4, shuffle=True))
        runs.append(final_weights(module))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


class StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class OptimizerStateAtStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.state = {
            k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in s.items()}
            for k, s in trainer.optimizers[0].state_dict()["state"].items()
        }
        self.step = trainer.global_step


def test_resume_continues_step_count_and_optimizer_state(tmp_path):
    n, total = 2, 4  # 3 batches per epoch: the checkpoint falls in the middle of the first epoch
    config = OptimizerConfig(lr=3e-3, warmup_steps=1)  # warm-up then cosine over `total` steps
    data = ListDataset(mlm_examples(6))

    def run(seed, callbacks, ckpt_path=None):
        L.seed_everything(seed, verbose=False)
        module = MaskedLanguageModelTask(MLM, optimizer=config)
        t = trainer(
            max_steps=total,
            callbacks=callbacks,
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        )
        t.fit(module, resumable_loader(data, 2, 0), ckpt_path=ckpt_path)
        return module, t

    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=n)
    first, t1 = run(0, [checkpoint, StopAt(n)])
    assert t1.global_step == n and (tmp_path / "last.ckpt").is_file()
    saved = {
        k: {"exp_avg": s["exp_avg"].clone(), "exp_avg_sq": s["exp_avg_sq"].clone(), "step": s["step"]}
        for k, s in t1.optimizers[0].state_dict()["state"].items()
    }

    probe = OptimizerStateAtStart()
    resumed, t2 = run(1, [probe], ckpt_path=tmp_path / "last.ckpt")  # another seed: everything comes from the file
    assert probe.step == n and t2.global_step == total
    assert saved.keys() == probe.state.keys()
    for k in saved:
        assert probe.state[k]["step"] == saved[k]["step"] == n
        assert torch.equal(probe.state[k]["exp_avg"], saved[k]["exp_avg"])
        assert torch.equal(probe.state[k]["exp_avg_sq"], saved[k]["exp_avg_sq"])

    # the loader's position is in the checkpoint: the resumed run trains on the epoch's third batch, then the next
    # epoch, exactly as the uninterrupted run (tests/training/test_resume.py: with dropout, shuffling, augmentation)
    straight, t3 = run(0, [])
    assert t3.global_step == total
    a, b = final_weights(resumed), final_weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the checkpoint also rebuilds the module without arguments, with safe (weights-only) loading
    loaded = MaskedLanguageModelTask.load_from_checkpoint(tmp_path / "last.ckpt", weights_only=True)
    assert loaded.model.config == first.model.config and loaded.optimizer_config == config
    assert all(torch.equal(loaded.model.state_dict()[k], final_weights(first)[k]) for k in a)


def test_export_callback_reloads_without_lightning(tmp_path):
    L.seed_everything(0, verbose=False)
    module = ImageClassificationTask(optimizer=FAST)
    export = ExportCallback(dirpath=str(tmp_path / "export"))
    t = trainer(max_steps=2, limit_val_batches=None, callbacks=[export], default_root_dir=tmp_path)
    t.fit(module, loader(image_examples(4)), loader(image_examples(4, seed=1)))
    model = ImageClassifier.from_pretrained(tmp_path / "export")
    images = torch.rand(3, 3, 32, 32)
    module.model.eval()
    with torch.no_grad():
        assert torch.equal(model(images).logits, module.model(images).logits)
    # default folder: <log_dir>/model, or <default_root_dir>/model without a logger
    L.seed_everything(0, verbose=False)
    module = OpticalFlowTask(optimizer=FAST)
    trainer(max_steps=1, callbacks=[ExportCallback()], default_root_dir=tmp_path / "flow").fit(
        module, loader(flow_examples(1))
    )
    assert isinstance(OpticalFlow.from_pretrained(tmp_path / "flow" / "model"), OpticalFlow)


def test_ddp_two_processes_agree(tmp_path):
    """Two CPU processes (gloo) train on different shards and end with identical weights."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 3
    assert ranks[0]["seen"] != ranks[1]["seen"]  # each process trained on its own shard
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert ranks[0]["val"] == ranks[1]["val"] and "val/bits_per_byte" in ranks[0]["val"]
    for r in ranks:  # metrics are sums over both processes' shards, not a mean of per-process values
        assert r["final_bits_per_byte"] == pytest.approx(r["expected_bits_per_byte"], rel=1e-5)
    sys.path.insert(0, str(HERE))
    from ddp_worker import weights_digest  # the export written by global rank 0 holds the same weights

    assert weights_digest(MaskedLanguageModel.from_pretrained(tmp_path / "model")) == ranks[0]["sha256"]


def test_bf16_mixed_precision_runs_on_cpu():
    L.seed_everything(0, verbose=False)
    module = MaskedLanguageModelTask(MLM, optimizer=FAST)
    t = trainer(max_steps=3, precision="bf16-mixed", limit_val_batches=None)
    t.fit(module, loader(mlm_examples(2)), loader(mlm_examples(2, seed=1)))
    assert t.global_step == 3 and math.isfinite(float(t.callback_metrics["val/bits_per_byte"]))
    assert all(p.dtype == torch.float32 for p in module.parameters())
    module = ImageClassificationTask(optimizer=FAST, randaugment=True, mixup_alpha=0.2, cutmix_alpha=1.0)
    trainer(max_steps=2, precision="bf16-mixed").fit(module, loader(image_examples(4)))
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_export_method_roundtrip(tmp_path):
    module = MaskedLanguageModelTask(MaskedLanguageModelConfig.tiny(max_seq_len=64))
    module.export(tmp_path)
    model = MaskedLanguageModel.from_pretrained(tmp_path)
    assert model.config == module.model.config
    mm = MultimodalAutoencodingTask()
    mm.export(tmp_path / "mm")
    assert MultimodalAutoencoder.from_pretrained(tmp_path / "mm").config == mm.model.config
