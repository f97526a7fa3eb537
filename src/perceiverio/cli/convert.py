"""``perceiverio convert hf|haiku SOURCE OUT_DIR``: transformers checkpoints and DeepMind Haiku parameters to our
folders (``model.safetensors`` + ``config.json``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import MODEL_FILES

_TASKS = {
    "mlm": "MaskedLanguageModel",
    "classifier": "SequenceClassifier",
    "image": "ImageClassifier",
    "flow": "OpticalFlow",
    "multimodal": "MultimodalAutoencoder",
}


def _model_class(name: str):
    import perceiverio

    return getattr(perceiverio, name)


def _hf_class(source: str | Path, revision: str | None):
    """The model class of a transformers checkpoint (folder or Hub repository), from its config's architectures."""
    from ..weights.registry import model_class_for
    from ..weights.transformers import read_config

    archs = read_config(source, revision).get("architectures") or []
    cls = model_class_for(archs)
    if cls is None:
        raise SystemExit(
            f"perceiverio convert hf: config.json names architectures {archs}; pass --task one of {sorted(_TASKS)}"
        )
    return cls


def _haiku_task(path: Path) -> str:
    from ..weights.haiku import read_haiku

    params, _ = read_haiku(path)
    modules = {k.split("/")[0] for k in params}
    for marker, name in (
        ("multimodal_decoder", "MultimodalAutoencoder"),
        ("flow_decoder", "OpticalFlow"),
        ("embedding_decoder", "MaskedLanguageModel"),
        ("image_preprocessor", "ImageClassifier"),
        ("embed", "SequenceClassifier"),
    ):
        if marker in modules:
            return name
    raise SystemExit(
        f"perceiverio convert haiku: cannot tell the model from modules {sorted(modules)[:8]}; "
        f"pass --task one of {sorted(_TASKS)}"
    )


def check_convert_output(output: Path, overwrite: bool) -> None:
    """SystemExit unless ``output`` can take a converted model: a folder without one (or a new folder), or one
    holding a model (``config.json``/``model.safetensors``) only with ``overwrite``."""
    if output.exists() and not output.is_dir():
        raise SystemExit(f"perceiverio convert: OUT_DIR {str(output)!r} is a file; expected a folder")
    held = [name for name in MODEL_FILES if (output / name).exists()]
    if held and not overwrite:
        raise SystemExit(
            f"perceiverio convert: OUT_DIR {str(output)!r} already holds a model ({', '.join(held)}); expected a "
            "folder without one, or pass --overwrite to replace it"
        )


def run(argv: list[str]) -> None:
    from ..weights.hub import is_repo_id

    parser = argparse.ArgumentParser(
        prog="perceiverio convert", description="Convert transformers or Haiku weights to a perceiverio folder."
    )
    parser.add_argument(
        "source_kind",
        choices=["hf", "haiku"],
        help="hf: a transformers folder or Hugging Face Hub repository id; haiku: .pickle/.npz",
    )
    parser.add_argument(
        "source",
        help="hf: a folder or an org/name Hub repository id (fetched into the Hub cache); haiku: a params file",
    )
    parser.add_argument("output", type=Path, help="folder to write model.safetensors + config.json into")
    parser.add_argument("--task", choices=sorted(_TASKS), help="model kind (default: inferred)")
    parser.add_argument(
        "--config",
        type=Path,
        help="a perceiverio config.json whose model config to use (e.g. head counts, which Haiku "
        "arrays do not reveal; default: inferred with the released models' head counts)",
    )
    parser.add_argument("--revision", help="hf from the Hub only: branch, tag or commit (default: main)")
    parser.add_argument(
        "--official-masking",
        action="store_true",
        help="hf only: use DeepMind's mask semantics instead of reproducing transformers exactly",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in the output folder")
    args = parser.parse_args(argv)
    check_convert_output(args.output, args.overwrite)
    from_hub = args.source_kind == "hf" and is_repo_id(args.source)
    if not from_hub and not Path(args.source).exists():
        raise SystemExit(f"perceiverio convert: {args.source} does not exist")
    if args.revision is not None and not from_hub:
        raise SystemExit("perceiverio convert: --revision applies to a Hugging Face Hub repository id")
    source = args.source if from_hub else Path(args.source)
    try:
        if args.task:
            cls = _model_class(_TASKS[args.task])
        elif args.source_kind == "hf":
            cls = _hf_class(source, args.revision)
        else:
            cls = _model_class(_haiku_task(source))
        config = None
        if args.config is not None:
            from ..weights.checkpoint import config_from_dict

            config = config_from_dict(json.loads(args.config.read_text())["config"])
        if args.source_kind == "hf":
            overrides = {"masking": "official"} if args.official_masking else {}
            model = cls.from_transformers(source, config=config, revision=args.revision, **overrides)
        else:
            model = cls.from_haiku(source, config=config)
        model.save_pretrained(args.output)
    except (ValueError, KeyError, OSError) as e:
        raise SystemExit(f"perceiverio convert: {e}") from None
    print(f"wrote {cls.__name__} ({model.num_parameters():,} parameters) to {args.output}")
