"""Checkpoint reading and writing in fairseq's layout."""

from seqloom.checkpoint.io import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]
