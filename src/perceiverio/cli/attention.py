"""``perceiverio attention``: pictures of a trained model's cross-attention on one input.

    perceiverio attention MODEL_DIR IMAGE [--latents 0,5,9] [--head H] [--mean M,.. --std S,..] [--out DIR]
    perceiverio attention MODEL_DIR TEXT_FILE [--latents 0,5,9] [--head H] [--max-bytes 96] [--out DIR]
    perceiverio attention MODEL_DIR FRAME1 FRAME2 [--query-pixel Y,X] [--head H] [--out DIR]

MODEL_DIR holds ``config.json`` + ``model.safetensors`` (what ``fit`` exports into ``<run>/model``). The maps are
probabilities of the encoder cross-attention (latents over inputs) and the decoder cross-attention (queries over
latents), averaged over the heads unless ``--head H`` picks head H of each (both cross-attentions must have it).
PNGs go to ``--out`` (default: ``attention/`` next to MODEL_DIR, i.e. in the run folder):

- ImageClassifier: ``<stem>.attention.png``: the image (resized to the model's ``image_shape``; ``--mean``/``--std``
  standardise it as the training data module did), one panel per latent of ``--latents`` (default the first 9) with
  its attention over the token grid stretched over the pixels, and a last panel "class query": the decoder's
  class-query attention over the latents times each latent's attention over the pixels, sum_n dec[n] · enc[n, m].
- MaskedLanguageModel, SequenceClassifier, MultitaskClassifier: ``<stem>.attention.png``: a heat map of latents
  (rows, ``--latents``, default all) × the first ``--max-bytes`` bytes of the UTF-8 file (columns).
- OpticalFlow (two frames of equal size, run as one whole-image ``forward``, no tiling):
  ``<stem>.query-Y-X.png``: the decoder attention of the query at pixel ``(Y, X)`` (default the centre) over the
  latents (bars), and that attention carried back to the input pixels through the encoder cross-attention,
  sum_n dec[q, n] · enc[n, m], drawn over frame 1. The latent self-attention layers in between are not included:
  the picture shows which pixels the latents that the query reads had read themselves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

PROG = "perceiverio attention"
IMAGE_LATENTS = 9  # default panels for images


def _fail(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: {message}")


def parse_ints(text: str, name: str, count: int | None = None) -> list[int]:
    """``"0,5,9"`` -> ``[0, 5, 9]`` (non-negative ints; exactly ``count`` of them when given), else SystemExit."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0 or (count is not None and len(values) != count):
        what = f"{count} non-negative integers" if count else "non-negative integers"
        raise _fail(f"{name} must be {what} separated by commas, got {text!r}")
    return values


def parse_floats(text: str, name: str, count: int, positive: bool = False) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split(",")], dtype=np.float32)
    except ValueError:
        values = np.zeros(0, dtype=np.float32)
    if values.shape != (count,) or not np.isfinite(values).all() or (positive and (values <= 0).any()):
        kind = "positive " if positive else ""
        raise _fail(f"{name} must be {count} finite {kind}numbers separated by commas (one per channel), got {text!r}")
    return values


def reduce_heads(maps: torch.Tensor, head: int | None, name: str = "--head") -> np.ndarray:
    """``[h, ...]`` -> ``[...]``: the mean over heads, or head ``head``."""
    if head is None:
        return maps.float().mean(0).numpy()
    if head >= maps.shape[0]:
        raise _fail(f"{name} must be below the number of heads ({maps.shape[0]}), got {head}")
    return maps[head].float().numpy()


def query_attention(maps, index: int, head: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What output query ``index`` attends to, of :class:`perceiverio.core.AttentionMaps` of one example
    (``maps.encoder [1, h, N, M]``, ``maps.decoder [1, h', O, N]``): ``(dec [N], dec @ enc [M])``, the decoder
    attention over the latents and that attention carried to the inputs through the encoder cross-attention
    (heads averaged in each, or head ``head``). Both sum to 1."""
    dec = reduce_heads(maps.decoder[0, :, index], head)  # [N]
    enc = reduce_heads(maps.encoder[0], head)  # [N, M]
    return dec, dec @ enc


def pick_latents(text: str | None, num_latents: int, default: int | None) -> list[int]:
    if text is None:
        return list(range(num_latents if default is None else min(default, num_latents)))
    latents = parse_ints(text, "--latents")
    if max(latents) >= num_latents:
        raise _fail(f"--latents must lie in [0, {num_latents}) for this model's {num_latents} latents, got {text!r}")
    return latents


def _head_text(head: int | None) -> str:
    return "mean over heads" if head is None else f"head {head}"


def image_attention(model, path: Path, args: argparse.Namespace, out: Path) -> Path:
    from ..data.readers.image import read_image
    from ..visual.attention import image_attention_png

    cfg = model.config.adapter
    channels = cfg.num_image_channels
    pixels = read_image(path, tuple(cfg.image_shape), 1 if channels == 1 else 3)  # uint8 [C, H, W]
    x = pixels.astype(np.float32) / 255.0
    if (args.mean is None) != (args.std is None):
        raise _fail("--mean and --std go together (the training data's per-channel statistics)")
    if args.mean is not None:
        mean = parse_floats(args.mean, "--mean", channels)
        std = parse_floats(args.std, "--std", channels, positive=True)
        x = (x - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        output = model(torch.from_numpy(x)[None], return_attention=True)
    enc = reduce_heads(output.encoder_attention[0], args.head)  # [N, M]
    dec = reduce_heads(output.decoder_attention[0], args.head)[0]  # [N]
    grid = model.input_adapter.token_grid(tuple(cfg.image_shape))
    latents = pick_latents(args.latents, enc.shape[0], IMAGE_LATENTS)
    maps = np.stack([enc[n].reshape(grid) for n in latents] + [(dec @ enc).reshape(grid)])  # [K + 1, h', w']
    titles = [f"latent {n}" for n in latents] + ["class query"]
    probs = output.logits[0].float().softmax(-1)
    top = int(probs.argmax())
    image = x if args.mean is None else pixels.astype(np.float32) / 255.0
    shown = image[0] if channels == 1 else image.transpose(1, 2, 0)
    title = (
        f"{path.name}: encoder cross-attention ({_head_text(args.head)}) over a {grid[0]}×{grid[1]} token grid; "
        f"predicted class {top} (p = {float(probs[top]):.2f})"
    )
    print(f"predicted class {top} with probability {float(probs[top]):.3f}")
    return image_attention_png(shown, maps, titles, out / f"{path.stem}.attention.png", title)


def text_attention(model, path: Path, args: argparse.Namespace, out: Path) -> Path:
    from ..tokenizer import ByteTokenizer
    from ..visual.attention import byte_label, text_attention_png

    if args.max_bytes < 1:
        raise _fail(f"--max-bytes must be a positive integer, got {args.max_bytes}")
    data = path.read_bytes()[: model.config.max_seq_len]
    if not data:
        raise _fail(f"INPUT {str(path)!r} is empty: give a UTF-8 text file")
    text = data.decode("utf-8", errors="replace")
    ids = torch.tensor(ByteTokenizer().encode(text)[: model.config.max_seq_len])[None]  # [1, L]
    with torch.no_grad():
        output = model(ids, return_attention=True)
    enc = reduce_heads(output.encoder_attention[0], args.head)  # [N, L]
    latents = pick_latents(args.latents, enc.shape[0], None)
    shown = min(args.max_bytes, ids.shape[1])
    labels = [byte_label(int(i) - 6) if int(i) >= 6 else "<s>" for i in ids[0, :shown]]  # ids are bytes + 6
    title = (
        f"{path.name}: encoder cross-attention ({_head_text(args.head)}), first {shown} of {ids.shape[1]} bytes "
        "(rows sum to 1 over all bytes)"
    )
    return text_attention_png(labels, enc[latents][:, :shown], latents, out / f"{path.stem}.attention.png", title)


def flow_attention(model, paths: list[Path], args: argparse.Namespace, out: Path) -> Path:
    from ..data.readers.flow import read_frame
    from ..visual.attention import query_attention_png

    first, second = (read_frame(p) for p in paths)  # uint8 [H, W, 3]
    if first.shape != second.shape:
        raise _fail(f"the two frames must have the same size, got {first.shape[:2]} and {second.shape[:2]}")
    h, w = first.shape[:2]
    y, x = parse_ints(args.query_pixel, "--query-pixel", 2) if args.query_pixel else (h // 2, w // 2)
    if y >= h or x >= w:
        raise _fail(f"--query-pixel must lie inside the {h}×{w} frames (Y < {h}, X < {w}), got {y},{x}")
    frames = torch.from_numpy(np.stack([first, second])).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [2, 3, H, W]
    with torch.no_grad():
        _, maps = model(frames[None], return_attention=True)
    dec, pixels = query_attention(maps, y * w + x, args.head)  # [N], [H·W]
    pixel_map = pixels.reshape(h, w)
    title = (
        f"query pixel (y={y}, x={x}), {_head_text(args.head)}: decoder attention over the latents, and "
        "sum_n dec[n]·enc[n, pixel] over frame 1"
    )
    return query_attention_png(first / 255.0, dec, pixel_map, (y, x), out / f"{paths[0].stem}.query-{y}-{x}.png", title)


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL_DIR", type=Path, help="a folder with model.safetensors + config.json")
    parser.add_argument(
        "inputs", metavar="INPUT", type=Path, nargs="+", help="an image, a UTF-8 text file, or two flow frames"
    )
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: attention/ next to MODEL_DIR)")
    parser.add_argument("--latents", help="latents to draw, e.g. 0,5,9 (images: first 9; text: all)")
    parser.add_argument("--head", type=int, help="draw this head only (default: the mean over heads)")
    parser.add_argument("--query-pixel", help="flow: the query pixel Y,X (default: the centre)")
    parser.add_argument("--mean", help="images: per-channel mean to subtract (as the training data module did)")
    parser.add_argument("--std", help="images: per-channel standard deviation to divide by")
    parser.add_argument("--max-bytes", type=int, default=96, help="text: bytes drawn as columns (default 96)")
    args = parser.parse_args(argv)
    from ..tasks import ImageClassifier, MaskedLanguageModel, MultitaskClassifier, OpticalFlow, SequenceClassifier
    from ..weights import load_pretrained

    try:
        import matplotlib  # noqa: F401  (the pictures need it: an optional dependency)
    except ImportError:
        raise _fail("needs matplotlib: pip install 'perceiverio[plot]'") from None
    if args.head is not None and args.head < 0:
        raise _fail(f"--head must be a non-negative head index, got {args.head}")
    if not args.model.is_dir():
        raise _fail(f"MODEL_DIR {str(args.model)!r} is not a folder (expected config.json + model.safetensors)")
    for path in args.inputs:
        if not path.is_file():
            raise _fail(f"INPUT {str(path)!r} is not a file")
    try:
        model = load_pretrained(args.model)
    except ValueError as e:
        raise _fail(str(e)) from None
    kinds = {ImageClassifier: 1, MaskedLanguageModel: 1, SequenceClassifier: 1, MultitaskClassifier: 1, OpticalFlow: 2}
    wanted = kinds.get(type(model))
    if wanted is None:
        names = ", ".join(k.__name__ for k in kinds)
        raise _fail(f"draws the attention of {names}; {args.model} holds a {type(model).__name__}")
    if len(args.inputs) != wanted:
        what = "two frames (FRAME1 FRAME2)" if wanted == 2 else "one INPUT file"
        raise _fail(f"a {type(model).__name__} takes {what}, got {len(args.inputs)}")
    out = args.out if args.out is not None else args.model.resolve().parent / "attention"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _fail(f"cannot create --out {str(out)!r}: {e.strerror}") from None
    try:
        if isinstance(model, ImageClassifier):
            written = image_attention(model, args.inputs[0], args, out)
        elif isinstance(model, OpticalFlow):
            written = flow_attention(model, args.inputs, args, out)
        else:
            written = text_attention(model, args.inputs[0], args, out)
    except (ValueError, OSError) as e:
        raise _fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    print(f"wrote {written}")
