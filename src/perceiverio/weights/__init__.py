"""Weights: our own checkpoint folders, the Hugging Face Hub, and conversion from transformers and Haiku.

* :mod:`.checkpoint`: ``save_pretrained``/``load_pretrained``/``push_to_hub`` (safetensors + ``config.json``).
* :mod:`.hub`: Hub repository ids, downloads into the Hub cache, uploads.
* :mod:`.transformers`, :mod:`.haiku` (+ :mod:`.safe_pickle`): the generic conversion code.
* :mod:`.language`, :mod:`.image`, :mod:`.flow`, :mod:`.multimodal`, :mod:`.perceiver`: each model's converters.
* :mod:`.registry`: the table naming every model class and its converters; importing it installs
  ``from_transformers``/``from_haiku`` (where a converter exists) and ``from_pretrained``/``save_pretrained``/
  ``push_to_hub`` on the models.
"""

from .checkpoint import config_from_dict, config_to_dict, load_pretrained, push_to_hub, save_pretrained
from .haiku import read_haiku
from .registry import REGISTRY, Converters, converters, to_haiku
from .safe_pickle import load_pickle

__all__ = [
    "REGISTRY",
    "Converters",
    "config_from_dict",
    "config_to_dict",
    "converters",
    "load_pickle",
    "load_pretrained",
    "push_to_hub",
    "read_haiku",
    "save_pretrained",
    "to_haiku",
]
