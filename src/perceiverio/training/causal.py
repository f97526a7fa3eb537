"""Lightning module of causal byte language modelling (Perceiver AR, :mod:`perceiverio.tasks.causal`)."""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.causal import CausalLanguageModel, CausalLanguageModelConfig
from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import NUM_SPECIAL
from .evaluation import EvaluatedTask, batch_value, require
from .metrics import LN2, RatioMetric, token_stats


def next_byte_stats(model: Any, batch: Any, what: str = "causal LM") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Σ cross-entropy in nats, Σ correct, count)`` of the latents' next-byte predictions on a batch of windows
    ``{"input_ids" [B, W], "attention_mask" [B, W] (optional), "labels" [B, W] (optional: input_ids)}``: the model
    reads ``input_ids[:, :-1]``; its N latents predict ``labels[:, -N:]`` (-100 and padding not scored)."""
    ids = require(batch, "input_ids", what)
    labels = batch_value(batch, "labels", ids)
    mask = batch_value(batch, "attention_mask")
    if ids.dim() != 2 or ids.shape[1] < 2 or tuple(labels.shape) != tuple(ids.shape):
        raise ValueError(
            f"{what} batches need input_ids [B, W] with W >= 2 and labels of the same shape, got "
            f"{tuple(ids.shape)} and {tuple(labels.shape)}"
        )
    inputs = ids[:, :-1]  # [B, M]
    logits = model(inputs, None if mask is None else mask[:, :-1]).logits  # [B, N, V]
    targets = labels[:, 1:][:, -logits.shape[1] :]  # [B, N]: row i predicts the byte after its position
    if mask is not None:
        targets = targets.masked_fill(mask[:, 1:][:, -logits.shape[1] :] == 0, IGNORE_INDEX)
    return token_stats(logits, targets)


class CausalLanguageModelTask(EvaluatedTask):
    """Causal byte language modelling with Perceiver AR (Hawthorne et al. 2022).

    Batch: windows of ``max_context + 1`` byte ids, ``{"input_ids" [B, W], "attention_mask" [B, W] (1 = byte, 0 =
    left padding), "labels" [B, W] (-100 = not scored)}``, as :class:`~perceiverio.data.CausalTextDataModule` makes
    them. The loss is the mean cross-entropy of the latents' next-byte predictions (the last N bytes of each
    window), padding and -100 ignored.

    Logs ``train/loss``; ``val/loss`` (nats per scored byte), ``val/bits_per_byte`` (= ``val/loss`` / ln 2) and
    ``val/next_byte_acc``, each summed over every scored byte of the validation set (``test/...`` under
    ``perceiverio test``). ``predict_step``: ``{"kind": "generation", "text": [str]}``, ``generate_tokens`` bytes
    sampled after each batch row (temperature ``generate_temperature``, seeded by ``generate_seed``).
    The exported model loads with ``CausalLanguageModel.from_pretrained(folder)``.
    """

    config_class, default_config = CausalLanguageModelConfig, CausalLanguageModelConfig.tiny

    def __init__(
        self,
        config: CausalLanguageModelConfig | None = None,
        *,
        generate_tokens: int = 200,
        generate_temperature: float = 0.8,
        generate_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config,
            generate_tokens=generate_tokens,
            generate_temperature=generate_temperature,
            generate_seed=generate_seed,
            **kwargs,
        )
        self._setup_model(CausalLanguageModel(self.model_config))
        self.generate_tokens, self.generate_temperature = generate_tokens, generate_temperature
        self.generate_seed = generate_seed
        self.val_nats, self.val_correct = RatioMetric(), RatioMetric()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_windows(self.model_config, self.trainer.datamodule if self._trainer is not None else None)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        nats, _, count = next_byte_stats(self, batch)
        loss = nats / count.clamp(min=1)
        self.log_train({"train/loss": loss}, batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        nats, correct, count = next_byte_stats(self, batch)
        self.val_nats.update(nats, count)
        self.val_correct.update(correct, count)

    def on_validation_epoch_end(self) -> None:
        nats = self.val_nats.compute()
        self.log_metrics({"val/next_byte_acc": self.val_correct})
        self.val_nats.reset()
        if torch.isfinite(nats):
            self.log_metric("val/loss", float(nats))
            self.log_metric("val/bits_per_byte", float(nats) / LN2, prog_bar=True)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "generation", "index", "text": [str]}``: each row's real bytes (``attention_mask`` 1) as a
        prompt followed by ``generate_tokens`` sampled bytes, decoded as UTF-8 (invalid bytes replaced)."""
        ids = require(batch, "input_ids", "causal LM")
        mask = batch_value(batch, "attention_mask", torch.ones_like(ids))
        texts = []
        for row, keep in zip(ids, mask):
            prompt = row[keep.bool()]
            out = self.model.generate(
                prompt, self.generate_tokens, temperature=self.generate_temperature, seed=self.generate_seed
            )
            texts.append(decode_bytes(out))
        return {"kind": "generation", "index": batch_value(batch, "index"), "text": texts}


def check_windows(config: CausalLanguageModelConfig, datamodule: Any) -> None:
    """A ValueError when the data module's scoring windows hold more new bytes (its ``num_latents``) than the model
    predicts per window (its N latents): the bytes before the model's last N would never be scored, and
    ``bits_per_byte`` would silently cover part of the text. Nothing to check without a data module that says."""
    n = getattr(datamodule, "num_latents", None)
    if isinstance(n, int) and n > config.num_latents:
        raise ValueError(
            f"data.num_latents ({n}) is larger than model.num_latents ({config.num_latents}): each validation window "
            f"scores {n} bytes but the model predicts only its last {config.num_latents}; give the data module the "
            f"model's num_latents (--data.num_latents {config.num_latents})"
        )


def decode_bytes(ids: torch.Tensor) -> str:
    """Byte ids ``[T]`` -> text (special ids dropped, invalid UTF-8 replaced)."""
    values = [int(i) - NUM_SPECIAL for i in ids.tolist() if int(i) >= NUM_SPECIAL]
    return bytes(values).decode("utf-8", errors="replace")
