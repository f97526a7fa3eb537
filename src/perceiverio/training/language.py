"""Lightning modules of the language tasks (paper §4.1): byte MLM, sequence classification, multi-task GLUE."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..tasks.language import (
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
    labeled_positions,
)
from ..tasks.outputs import IGNORE_INDEX
from ..tokenizer import MASK_ID
from .evaluation import EvaluatedTask, batch_value, class_probabilities, require
from .metrics import LN2, RatioMetric, classification_stats, token_stats


class MaskedLanguageModelTask(EvaluatedTask):
    """Byte masked language modelling (paper §4.1).

    Batch: ``{"input_ids" [B, L] long, "attention_mask" [B, L], "labels" [B, L] (-100 = not predicted)}`` (a
    :class:`~perceiverio.tokenizer.BatchEncoding` from
    :class:`~perceiverio.data.masking.WholeWordMaskingCollator` works too). ``decode_labeled_only``: decode only
    the labelled positions in training (same loss, far cheaper); validation always does.

    Logs ``train/loss``; ``val/loss`` (cross-entropy in nats per labelled byte), ``val/masked_byte_acc`` and
    ``val/bits_per_byte`` (= ``val/loss`` / ln 2), each summed over all labelled bytes of the validation set, and
    ``val/unigram_acc``, the accuracy of always predicting the most frequent masked byte (the baseline to beat).
    """

    config_class, default_config = MaskedLanguageModelConfig, MaskedLanguageModelConfig.tiny

    def __init__(
        self, config: MaskedLanguageModelConfig | None = None, *, decode_labeled_only: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(config, decode_labeled_only=decode_labeled_only, **kwargs)
        self._setup_model(MaskedLanguageModel(self.model_config))
        self.decode_labeled_only = decode_labeled_only
        self.val_nats, self.val_correct = RatioMetric(), RatioMetric()
        self._byte_counts: torch.Tensor | None = None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, labels = require(batch, "input_ids", "MLM"), require(batch, "labels", "MLM")
        mask = batch_value(batch, "attention_mask")
        out = self(ids, mask, labels=labels, decode_labeled_only=self.decode_labeled_only)
        self.log_train({"train/loss": out.loss}, ids.shape[0])
        return out.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, labels = require(batch, "input_ids", "MLM"), require(batch, "labels", "MLM")
        out = self(ids, batch_value(batch, "attention_mask"), labels=labels, decode_labeled_only=True)
        positions, valid = labeled_positions(labels)
        targets = labels.gather(1, positions).masked_fill(~valid, IGNORE_INDEX)
        nats, correct, count = token_stats(out.logits, targets)
        self.val_nats.update(nats, count)
        self.val_correct.update(correct, count)
        seen = targets[targets != IGNORE_INDEX]
        counts = torch.bincount(seen, minlength=self.model.config.vocab_size).double()
        self._byte_counts = counts if self._byte_counts is None else self._byte_counts + counts

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "fill", "index" [B], "input_ids" [B, L], "filled" [B, L], "attention_mask" [B, L]}``: every
        MASK id replaced by the model's most likely byte (the other ids as they were)."""
        ids = require(batch, "input_ids", "MLM")
        mask = batch_value(batch, "attention_mask")
        masked = ids == MASK_ID
        filled = ids.clone()
        if bool(masked.any()):
            logits = self(ids, mask).logits  # [B, L, V]
            filled = torch.where(masked, logits.argmax(-1), ids)
        keep = mask if mask is not None else torch.ones_like(ids)
        return {
            "kind": "fill",
            "index": batch_value(batch, "index"),
            "input_ids": ids.cpu(),
            "filled": filled.cpu(),
            "attention_mask": keep.cpu(),
        }

    def on_validation_epoch_end(self) -> None:
        nats = self.val_nats.compute()
        self.log_metrics({"val/masked_byte_acc": self.val_correct}, prog_bar=("val/masked_byte_acc",))
        if self._byte_counts is not None and self._byte_counts.sum() > 0:
            # the baseline to beat: always predicting the most frequent masked byte of this validation set
            self.log_metric("val/unigram_acc", float(self._byte_counts.max() / self._byte_counts.sum()))
        self._byte_counts = None
        self.val_nats.reset()
        if torch.isfinite(nats):
            self.log_metric("val/loss", float(nats))
            self.log_metric("val/bits_per_byte", float(nats) / LN2, prog_bar=True)


class SequenceClassificationTask(EvaluatedTask):
    """Byte sequence classification (GLUE-style fine-tuning).

    Batch: ``{"input_ids" [B, L], "attention_mask" [B, L], "labels" [B]}`` (class ids, -100 ignored; floats for a
    ``num_classes=1`` regressor). Logs ``train/loss``, ``val/loss`` (mean cross-entropy, or MSE for a regressor) and
    ``val/acc`` (classifiers only).
    """

    config_class, default_config = SequenceClassifierConfig, SequenceClassifierConfig.tiny

    def __init__(self, config: SequenceClassifierConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._setup_model(SequenceClassifier(self.model_config))
        self.val_loss, self.val_acc = RatioMetric(), RatioMetric()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, labels = require(batch, "input_ids", "classification"), require(batch, "labels", "classification")
        out = self(ids, batch_value(batch, "attention_mask"), labels=labels)
        self.log_train({"train/loss": out.loss}, ids.shape[0])
        return out.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, labels = require(batch, "input_ids", "classification"), require(batch, "labels", "classification")
        logits = self(ids, batch_value(batch, "attention_mask")).logits
        if self.model.config.num_classes == 1:
            self.val_loss.update((logits.squeeze(-1).float() - labels.float()).square().sum(), labels.numel())
            return
        nats, correct, count = classification_stats(logits, labels)
        self.val_loss.update(nats, count)
        self.val_acc.update(correct, count)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "classes", "index", "probs" [B, K]}``; a regressor (``num_classes=1``):
        ``{"kind": "regression", "index", "values" [B]}``."""
        ids = require(batch, "input_ids", "classification")
        logits = self(ids, batch_value(batch, "attention_mask")).logits
        index = batch_value(batch, "index")
        if self.model.config.num_classes == 1:
            return {"kind": "regression", "index": index, "values": logits.squeeze(-1).float().cpu()}
        return {"kind": "classes", "index": index, "probs": class_probabilities(logits)}

    def on_validation_epoch_end(self) -> None:
        self.log_metrics({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=("val/acc",))


class MultitaskClassificationTask(EvaluatedTask):
    """Multitask-query classification (the paper's GLUE variant): one learned query per task.

    Batch: ``{"input_ids", "attention_mask", "labels": {task: [B]}}`` with -100 where an example has no label for
    that task. Logs ``train/loss`` (mean over the labelled tasks), ``val/acc_<task>`` per classification task,
    ``val/acc`` (their mean) and ``val/loss`` (mean over tasks of each task's mean loss; MSE for regression tasks).
    """

    config_class, default_config = MultitaskClassifierConfig, MultitaskClassifierConfig.tiny

    def __init__(self, config: MultitaskClassifierConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        config = self.model_config
        self._setup_model(MultitaskClassifier(config))
        self.tasks = dict(config.tasks)
        # lists in task order (task names need not be valid module names)
        self.val_losses = nn.ModuleList(RatioMetric() for _ in self.tasks)
        self.val_accs = nn.ModuleList(RatioMetric() for _ in self.tasks)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, labels = require(batch, "input_ids", "multitask"), require(batch, "labels", "multitask")
        out = self(ids, batch_value(batch, "attention_mask"), labels=labels)
        loss = out.loss
        if loss is None:  # no labels at all in this batch: a zero loss keeps every process stepping together
            loss = sum(v.sum() for v in out.logits.values()) * 0.0
        self.log_train({"train/loss": loss, **{f"train/loss_{k}": v for k, v in out.task_losses.items()}}, ids.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, labels = require(batch, "input_ids", "multitask"), require(batch, "labels", "multitask")
        logits = self(ids, batch_value(batch, "attention_mask")).logits
        for i, (name, k) in enumerate(self.tasks.items()):
            y = labels.get(name) if hasattr(labels, "get") else None
            if y is None:
                continue
            if k == 1:
                keep = y != IGNORE_INDEX
                err = (logits[name].squeeze(-1).float() - y.float()).square()
                self.val_losses[i].update(err[keep].sum(), keep.sum())
                continue
            nats, correct, count = classification_stats(logits[name], y)
            self.val_losses[i].update(nats, count)
            self.val_accs[i].update(correct, count)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """``{"kind": "multitask", "index", "probs": {task: [B, K]}, "values": {task: [B]}}`` (classification
        tasks' probabilities, regression tasks' values)."""
        ids = require(batch, "input_ids", "multitask")
        logits = self(ids, batch_value(batch, "attention_mask")).logits
        probs = {n: class_probabilities(logits[n]) for n, k in self.tasks.items() if k > 1}
        values = {n: logits[n].squeeze(-1).float().cpu() for n, k in self.tasks.items() if k == 1}
        return {"kind": "multitask", "index": batch_value(batch, "index"), "probs": probs, "values": values}

    def on_validation_epoch_end(self) -> None:
        names = list(self.tasks)
        losses = self.log_metrics({f"val/loss_{n}": m for n, m in zip(names, self.val_losses)})
        accs = self.log_metrics({f"val/acc_{n}": m for n, m in zip(names, self.val_accs)})
        if losses:
            self.log_metric("val/loss", sum(losses.values()) / len(losses))
        if accs:
            self.log_metric("val/acc", sum(accs.values()) / len(accs), prog_bar=True)
