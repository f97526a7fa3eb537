"""The entry points the fuzz cases drive: every task model's forward/predict/reconstruct, ``PerceiverIO``, the
tokenizer and collators (this file), and the loaders (loaders.py)."""

from __future__ import annotations

import torch
from fuzz.cases import Arg, EntryPoint, model

B = 2  # batch


def _ids(high: int, length: int = 12, ignore: bool = False):
    def make(rng: torch.Generator) -> torch.Tensor:
        ids = torch.randint(0, high, (B, length), generator=rng)
        if ignore:  # labels: about half ignored (-100)
            ids[torch.rand(B, length, generator=rng) < 0.5] = -100
        return ids

    return make


def _mask(length: int):
    def make(rng: torch.Generator) -> torch.Tensor:
        mask = torch.ones(B, length, dtype=torch.long)
        mask[:, length - int(torch.randint(0, length // 2, (), generator=rng)) :] = 0
        return mask

    return make


def _float(*shape: int, kind: str = "randn"):
    def make(rng: torch.Generator) -> torch.Tensor:
        if kind == "rand":
            return torch.rand(*shape, generator=rng)
        return torch.randn(*shape, generator=rng)

    return make


def _const(value):
    return lambda rng: value


def _classes(k: int, shape: tuple[int, ...] = (B,)):
    return lambda rng: torch.randint(0, k, shape, generator=rng)


CHUNK = Arg(_const(None), kind="int", optional=True, names=("chunk_size",), bad=(0, -3, 2.5, "8"))
TEXT_IDS = Arg(_ids(262), kind="ids", high=262, names=("input_ids",))
TEXT_MASK = Arg(_mask(12), kind="mask", optional=True, names=("attention_mask",))


def _mlm(input_ids, attention_mask, labels, chunk_size):
    return model("mlm")(input_ids, attention_mask, labels=labels, chunk_size=chunk_size)


def _classifier(input_ids, attention_mask, labels):
    return model("classifier")(input_ids, attention_mask, labels=labels)


def _multitask(input_ids, attention_mask, labels):
    return model("multitask")(input_ids, attention_mask, labels=labels)


def _image(images, labels):
    return model("image")(images, labels=labels)


def _flow(frames, chunk_size):
    return model("flow")(frames, chunk_size=chunk_size)


def _flow_predict(frames, tile, scale):
    return model("flow").predict(frames, tile=tile, scale=scale)


def _multimodal(audio, image, label, chunk_size):
    return model("multimodal")({"audio": audio, "image": image, "label": label}, chunk_size=chunk_size)


def _reconstruct(audio, image, label, chunk_size):
    return model("multimodal").reconstruct({"audio": audio, "image": image, "label": label}, chunk_size=chunk_size)


def _set(entities, mask, chunk_size):
    return model("set")(entities, mask, chunk_size=chunk_size)


def _generic(inputs, input_mask, query_index, query_mask, chunk_size):
    return model("generic")(inputs, input_mask, query_index, query_mask, chunk_size)


def _resize_latents(n, images):
    import copy

    resized = copy.deepcopy(model("image")).resize_latents(n)  # a copy: the cached model keeps its size
    return resized(images).logits


def _tokenize(texts, padding, truncation, max_length, return_tensors):
    from perceiverio import ByteTokenizer

    return ByteTokenizer()(
        texts, padding=padding, truncation=truncation, max_length=max_length, return_tensors=return_tensors
    )


def _decode(ids):
    from perceiverio import ByteTokenizer

    return ByteTokenizer().decode(ids)


def _collate(examples, mask_prob, max_length):
    from perceiverio import WholeWordMaskingCollator

    return WholeWordMaskingCollator(mask_prob=mask_prob, max_length=max_length)(examples)


def _text(rng: torch.Generator) -> list[str]:
    words = ["the", "perceiver", "reads", "bytes", "über", "日本", "a", "model"]
    return [
        " ".join(words[int(i)] for i in torch.randint(0, len(words), (int(n),), generator=rng))
        for n in torch.randint(1, 6, (B,), generator=rng)
    ]


MULTIMODAL = {
    "audio": Arg(_float(B, 128, 1), names=("audio",)),
    "image": Arg(_float(B, 4, 3, 16, 16, kind="rand"), names=("image",)),
    "label": Arg(
        lambda rng: torch.nn.functional.one_hot(torch.randint(0, 5, (B,), generator=rng), 5).float(), names=("label",)
    ),
    "chunk_size": CHUNK,
}

ENTRY_POINTS = [
    EntryPoint(
        "MaskedLanguageModel.forward",
        _mlm,
        {
            "input_ids": TEXT_IDS,
            "attention_mask": TEXT_MASK,
            "labels": Arg(_ids(262, ignore=True), kind="ids", high=262, optional=True, names=("labels",)),
            "chunk_size": CHUNK,
        },
    ),
    EntryPoint(
        "SequenceClassifier.forward",
        _classifier,
        {
            "input_ids": TEXT_IDS,
            "attention_mask": TEXT_MASK,
            "labels": Arg(_classes(3), kind="ids", high=3, optional=True, names=("labels",)),
        },
    ),
    EntryPoint(
        "MultitaskClassifier.forward",
        _multitask,
        {
            "input_ids": TEXT_IDS,
            "attention_mask": TEXT_MASK,
            "labels": Arg(
                lambda rng: {"a": _classes(2)(rng), "b": _classes(3)(rng)},
                kind="value",
                optional=True,
                names=("labels",),
                bad=(
                    torch.tensor([0, 1]),
                    {"a": torch.tensor([0, 1])},
                    {"a": torch.tensor([5, 0]), "b": torch.tensor([0, 1])},
                    {"c": torch.tensor([0, 1])},
                    {"a": [0, 1], "b": [0, 1]},
                    {"a": torch.zeros(2, 3), "b": torch.tensor([0, 1])},
                    {"a": torch.tensor([0]), "b": torch.tensor([0])},
                ),
            ),
        },
    ),
    EntryPoint(
        "ImageClassifier.forward",
        _image,
        {
            "images": Arg(_float(B, 3, 32, 32), names=("images",)),
            "labels": Arg(_classes(10), kind="ids", high=10, optional=True, names=("labels",)),
        },
    ),
    EntryPoint(
        "OpticalFlow.forward", _flow, {"frames": Arg(_float(B, 2, 3, 24, 32), names=("frames",)), "chunk_size": CHUNK}
    ),
    EntryPoint(
        "OpticalFlow.predict",
        _flow_predict,
        {
            "frames": Arg(_float(1, 2, 3, 28, 40), names=("frames",)),
            "tile": Arg(
                _const((24, 32)),
                kind="value",
                optional=True,
                names=("tile",),
                bad=((0, 32), (24,), (24, 32, 1), (100, 100), ("a", "b"), (-24, 32)),
            ),
            "scale": Arg(
                _const(None),
                kind="value",
                optional=True,
                names=("scale",),
                bad=(0.0, -1.0, 2.0, float("nan"), float("inf"), 1e-9, "half"),
            ),
        },
    ),
    EntryPoint("MultimodalAutoencoder.forward", _multimodal, MULTIMODAL),
    EntryPoint("MultimodalAutoencoder.reconstruct", _reconstruct, MULTIMODAL),
    EntryPoint(
        "SetModel.forward",
        _set,
        {
            "entities": Arg(_float(B, 7, 16), names=("entities",)),
            "mask": Arg(_mask(7), kind="mask", optional=True, names=("mask",)),
            "chunk_size": CHUNK,
        },
    ),
    EntryPoint(
        "PerceiverIO.forward",
        _generic,
        {
            "inputs": Arg(_float(B, 9, 8), names=("inputs",)),
            "input_mask": Arg(_mask(9), kind="mask", optional=True, names=("input_mask",)),
            "query_index": Arg(
                lambda rng: torch.randint(0, 12, (5,), generator=rng),
                kind="ids",
                high=12,
                optional=True,
                names=("query_index",),
            ),
            "query_mask": Arg(
                _const(None),
                kind="value",
                optional=True,
                names=("query_mask",),
                bad=(torch.ones(2, 3), torch.ones(2, 5, dtype=torch.bool)[:, :4], torch.ones(3)),
            ),
            "chunk_size": CHUNK,
        },
    ),
    EntryPoint(
        "PerceiverIO.resize_latents",
        _resize_latents,
        {
            "n": Arg(_const(24), kind="int", names=("n",), bad=("8", 2.5, None, 0, -4, 2**31, True)),
            "images": Arg(_float(B, 3, 32, 32), names=("images",)),
        },
    ),
    EntryPoint(
        "ByteTokenizer.__call__",
        _tokenize,
        {
            "texts": Arg(
                _text,
                kind="value",
                names=("texts", "text"),
                bad=([1, 2], [b"x"], [["a"]], [], [None], torch.tensor([1])),
            ),
            "padding": Arg(_const(True), kind="value", names=("padding",), bad=("yes", 3, "longer")),
            "truncation": Arg(_const(True), kind="value", names=("truncation",), bad=("no", 2)),
            "max_length": Arg(_const(16), kind="int", optional=True, names=("max_length",)),
            "return_tensors": Arg(
                _const("pt"), kind="value", optional=True, names=("return_tensors",), bad=("np", "tf", "PT", 1)
            ),
        },
    ),
    EntryPoint(
        "ByteTokenizer.decode",
        _decode,
        {
            "ids": Arg(
                lambda rng: torch.randint(0, 262, (9,), generator=rng).tolist(),
                kind="value",
                names=("ids", "token id", "decode"),
                bad=(
                    [-1],
                    [262],
                    [2**40],
                    [1.5],
                    ["a"],
                    [[1, 2]],
                    torch.zeros(2, 2, dtype=torch.long),
                    torch.tensor([1.5]),
                    torch.tensor([True]),
                    [None],
                    "abc",
                    b"abc",
                ),
            )
        },
    ),
    EntryPoint(
        "WholeWordMaskingCollator.__call__",
        _collate,
        {
            "examples": Arg(
                _text,
                kind="value",
                names=("examples",),
                bad=([], [1, 2], [[1, -5]], [[1, 300]], [None], [["a"]], [b"x"], [[]]),
            ),
            "mask_prob": Arg(_const(0.15), kind="value", names=("mask_prob",), bad=(-0.1, 1.5, float("nan"), "0.15")),
            "max_length": Arg(_const(None), kind="int", optional=True, names=("max_length",)),
        },
    ),
]
