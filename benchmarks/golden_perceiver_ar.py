"""Golden outputs of the official Perceiver AR code (google-research/perceiver-ar) for a tiny random model.

Runs only in a scratch environment with JAX + Haiku + Flax (never in the project's venv, never under pytest):

    python3 -m venv /tmp/golden-venv
    /tmp/golden-venv/bin/pip install jax jaxlib dm-haiku chex flax numpy
    mkdir -p /tmp/par && git -C <clone of google-research/perceiver-ar> \
        show HEAD:perceiver_ar/perceiver_ar_model.py > /tmp/par/perceiver_ar_model.py
    /tmp/golden-venv/bin/python benchmarks/golden_perceiver_ar.py --model-file /tmp/par/perceiver_ar_model.py \
        --out tests/data/golden_perceiver_ar/golden.npz

The official module is imported unchanged; the only shim is `jnp.DeviceArray = jax.Array` (the name was removed from
JAX after 0.4; the module uses it in type annotations only). Everything written is float32/int32 numpy.
See tests/data/golden_perceiver_ar/README.md for what each array is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile

import numpy as np

# Tiny configuration: official experiment.py defaults, shrunk (see the README for the full list).
VOCAB = 262
MAX_CONTEXT = 32
LATENTS = 8
WIDTH = 32
HEADS = 2
LAYERS = 2
WIDENING = 4
FRACTION_TO_ROTATE = 0.5
SEED = 0


def model_kwargs() -> dict:
    """Keyword arguments for the official `PerceiverAR` (names as in its constructor)."""
    return dict(
        num_classes=VOCAB,
        input_idx_size=[MAX_CONTEXT],
        max_context_length=MAX_CONTEXT,
        position_encoding_type="rotary",
        input_embed_dim=WIDTH,
        position_encoding="sinusoidal",  # unused with rotary
        learnable_position_embeddings=False,
        num_transformers_per_block=LAYERS,
        z_index_dim=LATENTS,
        num_z_channels=WIDTH,
        num_cross_attend_heads=HEADS,
        num_transformer_heads=HEADS,
        cross_attend_widening_factor=WIDENING,
        transformer_widening_factor=WIDENING,
        initial_query_offsetting=False,
        initial_query_embed_style="none",
        include_initial_cross_attention=True,
        additional_cross_attend_after_layers=[],
        dropout_prob=0.1,  # inactive: is_training=False
        cross_attention_shape_for_attn="kv",
        encoder_use_query_residual=True,
        mask_style="final_block",
        latent_dropout_prob=0.0,
        encoder_dropout_prob=0.0,
        num_latents_per_position=1,
        activation_name="sq_relu",
        fraction_to_rotate=FRACTION_TO_ROTATE,
        fraction_heads_to_rotate=1.0,
        max_wavelength=MAX_CONTEXT,
        cross_attention_head_group_size=0,
        chunked_cross_attention=False,
        use_positions_from_data=True,  # set per call below
        train_input_positions=0,
        final_layer_init_zeros=False,
        use_negative_rotary_positions=False,
    )


def make_inputs() -> tuple[np.ndarray, np.ndarray]:
    """Three right-padded sequences (0 = padding, as in the official code): full, length 20, length 5 (< latents)."""
    rng = np.random.default_rng(1234)
    lengths = [MAX_CONTEXT, 20, 5]
    inputs = np.zeros((len(lengths), MAX_CONTEXT), np.int32)
    idxs = np.zeros((len(lengths), MAX_CONTEXT, 1), np.int32)
    for b, n in enumerate(lengths):
        inputs[b, :n] = rng.integers(1, VOCAB, size=n)
        idxs[b, :n, 0] = np.arange(1, n + 1)  # dataset.py: event_idxs = range(len) + 1, 0 on padding
    return inputs, idxs


def load_official(path: str):
    import jax
    import jax.numpy as jnp

    if not hasattr(jnp, "DeviceArray"):
        jnp.DeviceArray = jax.Array  # shim: annotation-only use in the official module
    spec = importlib.util.spec_from_file_location("perceiver_ar_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(params, seed: int):
    """Replace every parameter with random values so that every path (biases, layer-norm gains) matters."""
    import haiku as hk
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    out = {}
    for module, leaves in params.items():
        out[module] = {}
        for name, value in leaves.items():
            shape = value.shape
            if name == "scale":  # layer-norm gain
                arr = 1.0 + 0.2 * rng.standard_normal(shape)
            elif name in ("offset", "b"):
                arr = 0.1 * rng.standard_normal(shape)
            elif name == "embeddings":
                arr = rng.standard_normal(shape)
            else:  # linear weights [in, out]
                arr = rng.standard_normal(shape) / np.sqrt(shape[0])
            out[module][name] = jnp.asarray(arr.astype(np.float32))
    return hk.data_structures.to_haiku_dict(out) if hasattr(hk.data_structures, "to_haiku_dict") else out


def run(model_file: str) -> dict[str, np.ndarray]:
    import haiku as hk
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    par = load_official(model_file)
    inputs, idxs = make_inputs()

    def forward(x, x_idxs, from_data):
        kwargs = model_kwargs()
        kwargs["use_positions_from_data"] = from_data
        model = par.PerceiverAR(**kwargs)
        return model(inputs=x, input_idxs=x_idxs if from_data else None, is_training=False)

    fwd_terminal = hk.transform(lambda x: forward(x, None, False))
    fwd_data = hk.transform(lambda x, i: forward(x, i, True))
    key = jax.random.PRNGKey(SEED)
    params = randomize(fwd_terminal.init(key, inputs), SEED)

    captured: dict[str, np.ndarray] = {}

    def interceptor(next_f, args, kwargs, context):
        out = next_f(*args, **kwargs)
        name = context.module.module_name
        if context.method_name == "__call__" and ("cross_attention" in name or "self_attention" in name):
            if name.rsplit("/", 1)[0] == "perceiver_ar/~":  # the top-level blocks, not their sub-modules
                captured[name.split("/")[-1]] = np.asarray(out[0])
        if context.method_name == "__call__" and name.endswith("/~/embed"):
            captured["embed"] = np.asarray(out)
        return out

    intercept = getattr(hk, "intercept_methods", None) or hk.experimental.intercept_methods

    def apply_terminal(p):
        with intercept(interceptor):
            return fwd_terminal.apply(p, key, inputs)

    out_t = apply_terminal(params)
    acts = dict(captured)
    captured.clear()
    out_t2 = fwd_terminal.apply(params, key, inputs)
    if not np.array_equal(np.asarray(out_t.input_events_logits), np.asarray(out_t2.input_events_logits)):
        raise SystemExit("golden_perceiver_ar: two runs gave different logits (not deterministic)")
    out_d = fwd_data.apply(params, key, inputs, idxs)

    positions_terminal = np.asarray(
        par.make_positions_terminal_relative(np.broadcast_to(np.arange(MAX_CONTEXT), inputs.shape), inputs)
    )

    arrays: dict[str, np.ndarray] = {
        "inputs": inputs,
        "input_idxs": idxs,
        "positions_terminal": positions_terminal.astype(np.int32),
        "latent_last_steps": np.asarray(out_t.latent_last_steps).astype(np.int32),
        "encoder_mask": np.asarray(out_t.encoder_mask).astype(np.float32),
        "processor_mask": np.asarray(out_t.processor_mask).astype(np.float32),
        "logits_terminal": np.asarray(out_t.input_events_logits, np.float32),
        "logits_data_positions": np.asarray(out_d.input_events_logits, np.float32),
    }
    for name, value in acts.items():
        arrays[f"act/{name}"] = value.astype(np.float32)
    for module, leaves in params.items():
        for name, value in leaves.items():
            arrays[f"params/{module}/{name}"] = np.asarray(value, np.float32)
    return arrays


def numpy_reference(a: dict[str, np.ndarray], positions: np.ndarray) -> np.ndarray:
    """The equations written in the README, in plain numpy (float64): must reproduce the official logits."""
    p = {k[len("params/perceiver_ar/") :]: v.astype(np.float64) for k, v in a.items() if k.startswith("params/")}
    inputs = a["inputs"]
    B, L = inputs.shape  # noqa: N806

    def ln(x, prefix):  # haiku LayerNorm, use_fast_variance=True, eps=1e-5
        mean = x.mean(-1, keepdims=True)
        var = (x * x).mean(-1, keepdims=True) - mean * mean
        return (x - mean) / np.sqrt(var + 1e-5) * p[prefix + "/scale"] + p[prefix + "/offset"]

    def lin(x, prefix):  # haiku Linear: x @ w + b, w is [in, out]
        return x @ p[prefix + "/w"] + p[prefix + "/b"]

    def rotary(x, pos):  # x [B, T, H, D], pos [B, T]
        d = x.shape[-1]
        r = int(np.floor(d * FRACTION_TO_ROTATE / 2.0) * 2)
        bands = r // 2
        inv = 1.0 / (MAX_CONTEXT ** ((2.0 / r) * np.linspace(0, bands, bands)))  # note: rotated width r, endpoint
        ang = pos[:, :, None, None] * np.repeat(inv, 2)[None, None, None, :]  # [B, T, 1, r]
        xr = x[..., :r]
        swapped = np.stack([-xr[..., 1::2], xr[..., 0::2]], -1).reshape(xr.shape)  # pairs (2i, 2i+1)
        return np.concatenate([xr * np.cos(ang) + swapped * np.sin(ang), x[..., r:]], -1)

    def attention(xq, xkv, prefix, mask, qpos, kpos):
        q = lin(xq, prefix + "/linear").reshape(B, xq.shape[1], HEADS, -1)
        k = lin(xkv, prefix + "/linear_1").reshape(B, xkv.shape[1], HEADS, -1)
        v = lin(xkv, prefix + "/linear_2").reshape(B, xkv.shape[1], HEADS, -1)
        q, k = rotary(q, qpos), rotary(k, kpos)
        s = np.einsum("bthd,bThd->bhtT", q, k) / np.sqrt(q.shape[-1])
        s = np.where(mask[:, None] > 0, s, -1e30)
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        o = np.einsum("bhtT,bThd->bthd", w, v).reshape(B, xq.shape[1], -1)
        return lin(o, prefix + "/linear_3")

    def mlp(x, prefix):
        return lin(np.maximum(lin(x, prefix + "/linear"), 0.0) ** 2, prefix + "/linear_1")  # sq_relu

    length = np.where((inputs == 0).any(1), (inputs == 0).argmax(1), L)  # first padding index
    steps = np.maximum(length[:, None] + np.arange(-LATENTS, 0)[None, :], -1)  # [B, N]
    enc_mask = (steps[:, :, None] >= np.arange(L)[None, None, :]) & (inputs[:, None, :] > 0)  # [B, N, L]
    proc_mask = (steps[:, :, None] >= steps[:, None, :]) & (steps[:, None, :] >= 0)  # [B, N, N]
    proc_mask = proc_mask | np.eye(LATENTS, dtype=bool)[None]
    emb = p["~/embed/embeddings"][inputs]  # [B, L, C]
    take = np.take_along_axis
    lat_pos = take(positions, np.where(steps < 0, L - 1, steps), 1).astype(np.float64)  # index -1 = last
    q_in = lin(take(emb, np.where(steps < 0, L - 1, steps)[:, :, None], 1), "~/linear")  # [B, N, C]
    c = "~/cross_attention"
    x = q_in + attention(
        ln(q_in, c + "/layer_norm"),
        ln(emb, c + "/layer_norm_1"),
        c + "/attention",
        enc_mask,
        lat_pos,
        positions.astype(np.float64),
    )
    x = x + mlp(ln(x, c + "/layer_norm_2"), c + "/dense")
    for i in range(LAYERS):
        s = "~/self_attention" + (f"_{i}" if i else "")
        h = ln(x, s + "/layer_norm")
        x = x + attention(h, h, s + "/attention", proc_mask, lat_pos, lat_pos)
        x = x + mlp(ln(x, s + "/layer_norm_1"), s + "/dense")
    return lin(ln(x, "layer_norm"), "~/logits")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", required=True, help="official perceiver_ar/perceiver_ar_model.py")
    parser.add_argument("--out", required=True, help="output .npz")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model_file):
        raise SystemExit(f"golden_perceiver_ar: --model-file {args.model_file!r} does not exist")
    first = run(args.model_file)
    second = run(args.model_file)  # determinism: a fresh build gives bit-identical arrays
    for name in first:
        if not np.array_equal(first[name], second[name]):
            raise SystemExit(f"golden_perceiver_ar: {name} differs between two runs")
    for key, positions in (
        ("logits_terminal", first["positions_terminal"]),
        ("logits_data_positions", first["input_idxs"][..., 0]),
    ):
        diff = np.abs(numpy_reference(first, positions) - first[key]).max()
        print(f"numpy reference of the README equations vs official {key}: max |diff| = {diff:.2e}")
        if diff > 1e-4:
            raise SystemExit(f"golden_perceiver_ar: the README equations do not reproduce {key}")
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **first)
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, args.out)
    for name, value in first.items():
        print(f"{name:70s} {str(value.shape):18s} {value.dtype}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); two runs bit-identical")


if __name__ == "__main__":
    sys.exit(main())
