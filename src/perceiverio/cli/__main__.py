"""``python -m perceiverio.cli``: the ``perceiverio`` command (used by torchrun and DDP restarts)."""

from . import main

main()
