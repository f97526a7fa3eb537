"""The prediction writer of ``perceiverio predict``: what each task's ``predict_step`` returns, written as files.

Into ``dirpath`` (default ``<log dir>/predictions`` under ``trainer.default_root_dir``), by the ``kind`` of the
prediction (see :mod:`perceiverio.training.evaluation`):

* every task: ``predictions.jsonl``, one JSON object per input (``"input"``: its file, ``file:line`` or pair);
* ``classes`` (images, text classifiers): ``"labels"`` and ``"probabilities"``, the ``top_k`` most likely classes,
  most likely first; ``regression``: ``"value"``; ``multitask``: ``"tasks"`` of those per task;
* ``fill`` (the MLM): ``"text"`` (masked bytes shown as ``mask_char``) and ``"filled"``, also ``filled.txt``
  (one filled line per input line);
* ``flow``: ``<frame>.flo`` (Middlebury format) and ``<frame>.png`` (colour-coded, :mod:`perceiverio.visual.flow`,
  with a legend); with ground truth also ``<frame>-truth.png`` at the same colour scale and ``"epe"`` in the JSON;
* ``reconstruction`` (multimodal autoencoder), per video: ``<video>.mp4`` (the reconstructed clips in order),
  ``<video>.wav`` (the reconstructed audio), ``<video>-strip.png`` (the middle clip's frames, original above
  reconstruction, with the PSNR of the whole video under them) and ``"psnr_<name>"`` of the video and audio
  modalities and the label's top-k in JSON.

Every file is written atomically. While predicting without a progress bar, progress lines are printed about ten
times; at the end, the number of examples, the time and the throughput (examples/s).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..data.readers.flow import write_flo
from ..tokenizer import MASK_ID, NUM_SPECIAL, ByteTokenizer
from ..visual.files import write_text
from ..visual.flow import write_flow_png
from ..visual.media import write_mp4, write_strip, write_wav
from .metrics import psnr
from .outputs import check_folder, default_folder_option

KINDS = ("classes", "regression", "multitask", "fill", "flow", "reconstruction")


def top_k(probs: torch.Tensor, k: int, names: list[str] | None) -> dict[str, list]:
    """``probs`` ``[K]`` -> ``{"labels": [...], "probabilities": [...]}``: the ``k`` most likely classes, most
    likely first (class names from ``names`` when it has one per class, else the ids as strings)."""
    values, ids = probs.float().topk(min(k, probs.numel()))
    labels = [names[i] if names and len(names) == probs.numel() else str(i) for i in ids.tolist()]
    return {"labels": labels, "probabilities": [round(float(v), 6) for v in values]}


def safe_stem(name: str) -> str:
    """A relative input name -> a relative output stem (suffix dropped; never above the output folder)."""
    parts = [p for p in Path(name.split(":")[0]).with_suffix("").parts if p not in ("", ".", "..", "/")]
    return "/".join(parts) or "input"


class PredictionWriter(BasePredictionWriter):
    """Write predictions (see the module docs) into ``dirpath`` (default ``<trainer.log_dir>/predictions``, or
    ``<default_root_dir>/predictions`` without a logger); ``top_k``: how many classes each line lists. The MLM's
    JSON shows masked bytes as the data module's ``mask_char``."""

    def __init__(self, dirpath: str | None = None, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        if dirpath is not None and (not isinstance(dirpath, (str, Path)) or not str(dirpath)):
            raise ValueError(f"predictions.dirpath must be a folder path, got {dirpath!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"predictions.top_k must be a positive integer, got {top_k!r}")
        self.dirpath, self.top_k = dirpath, top_k
        self.written: list[Path] = []
        self._reset()

    def _reset(self) -> None:
        self._lines: list[dict[str, Any]] = []
        self._filled: list[str] = []
        self._videos: dict[str, dict[str, list]] = {}
        self._count, self._start, self._batches = 0, time.perf_counter(), 0

    def directory(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "predictions"

    def output_folder(self, trainer: L.Trainer) -> tuple[Path, str, bool]:
        named = self.dirpath is not None
        return self.directory(trainer), "predictions.dirpath" if named else default_folder_option("predictions"), True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict":
            check_folder(*self.output_folder(trainer))

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self.written = []

    # ------------------------------------------------------------------------------------------------ batches
    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not isinstance(prediction, dict) or prediction.get("kind") not in KINDS:
            raise ValueError(
                f"predict_step of {type(pl_module).__name__} must return a dict with 'kind' in {KINDS}; got "
                f"{type(prediction).__name__}"
            )
        loaders = trainer.predict_dataloaders
        dataset = (loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders).dataset
        index = prediction.get("index")
        idx = index.tolist() if index is not None else list(batch_indices or [])
        names = getattr(dataset, "names", None)
        inputs = [names[i] if names else f"example {i}" for i in idx]
        self._idx = idx
        getattr(self, "_" + prediction["kind"])(trainer, prediction, inputs, dataset)
        self._count += len(inputs)
        self._batches += 1
        self._progress(trainer)

    def _class_names(self, trainer: L.Trainer) -> list[str] | None:
        dm = trainer.datamodule
        for attr in ("label_names", "class_names"):
            names = getattr(dm, attr, None) if dm is not None else None
            if names:
                return list(names)
        return None

    def _classes(self, trainer, p, inputs, dataset) -> None:
        names = self._class_names(trainer)
        for name, probs in zip(inputs, p["probs"]):
            self._lines.append({"input": name, **top_k(probs, self.top_k, names)})

    def _regression(self, trainer, p, inputs, dataset) -> None:
        self._lines += [{"input": n, "value": float(v)} for n, v in zip(inputs, p["values"])]

    def _multitask(self, trainer, p, inputs, dataset) -> None:
        for b, name in enumerate(inputs):
            tasks = {t: top_k(v[b], self.top_k, None) for t, v in p["probs"].items()}
            tasks.update({t: {"value": float(v[b])} for t, v in p["values"].items()})
            self._lines.append({"input": name, "tasks": tasks})

    def _fill(self, trainer, p, inputs, dataset) -> None:
        tok = ByteTokenizer()
        mask_char = getattr(trainer.datamodule, "mask_char", None) or "_"
        mask_id = mask_char.encode()[0] + NUM_SPECIAL  # the byte id that shows a MASK in the written input
        for b, name in enumerate(inputs):
            keep = p["attention_mask"][b].bool()
            ids, filled = p["input_ids"][b][keep], p["filled"][b][keep]
            shown = torch.where(ids == MASK_ID, torch.full_like(ids, mask_id), ids)
            line = {"input": name, "text": tok.decode(shown), "filled": tok.decode(filled)}
            line["masked"] = int((ids == MASK_ID).sum())
            if hasattr(dataset, "truncated") and dataset.truncated(self._idx[b]):
                line["truncated"] = True
            self._lines.append(line)
            self._filled.append(line["filled"])

    def _flow(self, trainer, p, inputs, dataset) -> None:
        folder = self.directory(trainer)
        for b, name in enumerate(inputs):
            stem = safe_stem(name)
            flow = p["flow"][b].permute(1, 2, 0).numpy()  # [H, W, 2]
            line: dict[str, Any] = {"input": name, "flo": f"{stem}.flo", "png": f"{stem}.png"}
            scale = None
            if p.get("truth") is not None:
                truth = p["truth"][b].permute(1, 2, 0).numpy()
                valid = p["valid"][b].numpy() if p.get("valid") is not None else np.ones(truth.shape[:2], bool)
                shown = np.where(valid[..., None], truth, np.nan)
                mags = np.hypot(truth[..., 0], truth[..., 1])[valid]
                scale = float(mags.max()) if mags.size else None
                self.written.append(folder / f"{stem}-truth.png")
                write_flow_png(self.written[-1], shown, scale)
                err = np.hypot(*(flow - truth).transpose(2, 0, 1))[valid]
                line.update({"truth_png": f"{stem}-truth.png", "epe": float(err.mean()) if err.size else None})
            write_flo(folder / f"{stem}.flo", flow)
            write_flow_png(folder / f"{stem}.png", flow, scale)
            self.written += [folder / f"{stem}.flo", folder / f"{stem}.png"]
            self._lines.append(line)

    def _reconstruction(self, trainer, p, inputs, dataset) -> None:
        kinds = p["kinds"]
        for b, name in enumerate(inputs):
            video = self._videos.setdefault(name, {"in": {n: [] for n in kinds}, "out": {n: [] for n in kinds}})
            for n in kinds:
                video["in"][n].append(p["inputs"][n][b])
                video["out"][n].append(p["outputs"][n][b])
        self._kinds = kinds

    # ------------------------------------------------------------------------------------------------ the end
    def _write_videos(self, trainer: L.Trainer, dataset: Any) -> None:
        folder, names = self.directory(trainer), self._class_names(trainer)
        fps, rate = getattr(dataset, "fps", {}), int(getattr(dataset, "sample_rate", 48_000))
        gain = float(getattr(dataset, "audio_gain", 1.0)) or 1.0
        for name, parts in self._videos.items():
            stem, line = safe_stem(name), {"input": name, "clips": 0}
            for n, kind in self._kinds.items():
                x, y = torch.stack(parts["in"][n]), torch.stack(parts["out"][n])
                line["clips"] = len(x)
                if kind == "image":  # clips [N, T, C, H, W] -> frames [N·T, H, W, C]
                    frames_in = x.reshape(-1, *x.shape[-3:]).movedim(1, -1).clamp(0, 1).numpy()
                    frames_out = y.reshape(-1, *y.shape[-3:]).movedim(1, -1).clamp(0, 1).numpy()
                    value = float(psnr(y.reshape(1, -1), x.reshape(1, -1))[0][0])
                    line[f"psnr_{n}"] = round(value, 3)
                    t = x.shape[1] if x.dim() == 5 else 1
                    first = (len(x) // 2) * t  # the middle clip (videos often open on black)
                    caption = f"{name}: PSNR {value:.2f} dB over {len(frames_in)} frames; shown {first}-{first + t - 1}"
                    shown = slice(first, first + t)
                    size = write_strip(folder / f"{stem}-strip.png", frames_in[shown], frames_out[shown], caption)
                    write_mp4(folder / f"{stem}.mp4", (frames_out * 255 + 0.5).astype(np.uint8), fps.get(name, 25.0))
                    line.update({"mp4": f"{stem}.mp4", "strip_png": f"{stem}-strip.png", "strip_size": list(size)})
                    self.written += [folder / f"{stem}.mp4", folder / f"{stem}-strip.png"]
                elif kind == "audio":
                    a, r = x.reshape(len(x), -1), y.reshape(len(y), -1)
                    value, defined = psnr(r.reshape(1, -1), a.reshape(1, -1))
                    line[f"psnr_{n}"] = round(float(value[0]), 3) if bool(defined[0]) else None
                    write_wav(folder / f"{stem}.wav", (r.reshape(-1) / gain).numpy(), rate)
                    line["wav"] = f"{stem}.wav"
                    self.written.append(folder / f"{stem}.wav")
                else:
                    line[n] = top_k(y.float().softmax(-1).mean(0), self.top_k, names)
            self._lines.append(line)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = self.directory(trainer)
        if self._videos:
            loaders = trainer.predict_dataloaders
            self._write_videos(trainer, (loaders[0] if isinstance(loaders, (list, tuple)) else loaders).dataset)
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self._lines)
        self.written.append(write_text(folder / "predictions.jsonl", text))
        if self._filled:
            self.written.append(write_text(folder / "filled.txt", "".join(t + "\n" for t in self._filled)))
        elapsed = time.perf_counter() - self._start
        rate = self._count / elapsed if elapsed > 0 else math.inf
        if trainer.is_global_zero:
            print(
                f"predicted {self._count} example{'' if self._count == 1 else 's'} in {elapsed:.1f} s "
                f"({rate:.1f} examples/s); wrote "
                f"{len(self.written)} files to {folder}",
                flush=True,
            )

    def _progress(self, trainer: L.Trainer) -> None:
        if trainer.progress_bar_callback is not None or not trainer.is_global_zero:
            return
        total = trainer.num_predict_batches[0] if trainer.num_predict_batches else 0
        every = max(1, int(total) // 10) if total and math.isfinite(total) else 10
        if self._batches % every == 0 or self._batches == total:
            elapsed = time.perf_counter() - self._start
            where = f"{self._batches}/{total}" if total and math.isfinite(total) else str(self._batches)
            print(f"predict batch {where}: {self._count} examples | {elapsed:.0f} s elapsed", flush=True)
