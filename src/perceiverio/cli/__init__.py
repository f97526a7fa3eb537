"""The ``perceiverio`` command line (``perceiverio --help`` lists every command of ``COMMANDS``; ``--version``).

    perceiverio fit [--config CONFIG.yaml] [--trainer.max_steps N] [--data.path P] ...   (LightningCLI)
    perceiverio validate --config CONFIG.yaml --ckpt_path runs/.../last.ckpt
    perceiverio test --config CONFIG.yaml --ckpt_path runs/.../last.ckpt [--data.test_path P]
    perceiverio predict --config CONFIG.yaml --ckpt_path runs/.../last.ckpt --data.predict_path FILE_OR_FOLDER
        [--predictions.dirpath DIR] [--predictions.top_k K]      (docs/inference.md)
    perceiverio convert hf NAME_OR_FOLDER OUT_DIR [--revision REV] [--official-masking] [--overwrite]
    perceiverio convert haiku PARAMS.pickle OUT_DIR [--task mlm|classifier|image|flow|multimodal] [--overwrite]
    perceiverio fill-mask MODEL_DIR --text "..." (--word WORD | --mask-char _)
    perceiverio generate MODEL_DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
        [--seed S] [--stop TEXT]                                  (docs/generation.md)
    perceiverio plot RUN_DIR [--out FILE.png]
    perceiverio attention MODEL_DIR INPUT [INPUT2] [--out DIR] [--latents 0,5,...] [--head H] [--query-pixel Y,X]
    perceiverio export MODEL_DIR --format onnx|pt2 [--out FILE] [--opset N] [--overwrite]

``fit``/``validate``/``test`` without ``--config`` run the main job: byte-level masked language modelling on the
standard library's own reference text (``configs/mlm.yaml``). Configs follow LightningCLI/jsonargparse conventions
(``--print_config``, dotted overrides such as ``--model.encoder.num_latents 64``, ``--model.optimizer.lr 3e-4``,
``--data.batch_size 64``). Training runs on every GPU found, else on the CPU (``--trainer.accelerator``,
``--trainer.devices``; docs/gpu.md). Trained weights are exported as ``model.safetensors`` + ``config.json``
(loadable with ``Model.from_pretrained``) into ``<log dir>/model``; ``last.ckpt`` holds the trainer state for resume.
Every output (logs, checkpoints, the export, config.yaml) goes under ``--trainer.default_root_dir`` (``runs``) unless
an option names its folder; the folders are checked for writing before the first step. A NaN or infinite loss or
gradient stops ``fit`` with exit status 1 and no export (``--nonfinite.action skip`` skips such steps instead).
``convert`` refuses to replace a model in OUT_DIR without ``--overwrite``; ``export`` writes an ONNX file or a
``torch.export`` program checked against PyTorch eager (docs/export.md).
"""

from __future__ import annotations

import sys

from . import attention, convert, export, fill, generate, lightning, plot
from .common import LIGHTNING_COMMANDS
from .fill import fill_mask
from .usage import command_list, version

__all__ = ["COMMANDS", "fill_mask", "main"]

COMMANDS = {
    "attention": attention.run,
    "convert": convert.run,
    "export": export.run,
    "fill-mask": fill.run,
    "generate": generate.run,
    "plot": plot.run,
    **dict.fromkeys(LIGHTNING_COMMANDS, lightning.run),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"{command_list(COMMANDS)}\n\n{__doc__.strip()}")  # the list follows COMMANDS
        return
    if argv[0] in ("-V", "--version"):
        print(version())
        return
    command = COMMANDS.get(argv[0])
    if command is None:
        raise SystemExit(f"perceiverio: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}")
    command(argv if argv[0] in LIGHTNING_COMMANDS else argv[1:])
