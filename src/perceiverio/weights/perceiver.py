"""Converter of the plain :class:`~perceiverio.core.perceiver.PerceiverIO` (no preprocessor): DeepMind's generic
``PerceiverEncoder`` + ``BasicDecoder`` with learned queries, from Haiku. No array shows the head counts, so a config
is always required (``PerceiverIO.from_haiku(params, config=PerceiverIOConfig(...))``). Only ``PerceiverIO`` itself
has it: a subclass with adapters of its own needs its own converter."""

from __future__ import annotations

from torch import nn

from .haiku import ENCODER_PREFIXES, Converted, HaikuConverter, HaikuParams, basic_decoder, encoder


def convert_perceiver(hp: HaikuParams, model: nn.Module) -> Converted:
    out: Converted = {}
    encoder(hp, hp.prefix(ENCODER_PREFIXES), "encoder", out, len(model.encoder.self_attention))
    basic_decoder(hp, "basic_decoder", "decoder", out, model.decoder.projection is not None, queries="output_queries")
    return out


PERCEIVER_HAIKU = HaikuConverter(convert_perceiver)
