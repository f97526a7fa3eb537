"""Checkpoint conversion (transformers, Haiku) and data readers."""
