"""Checkpoint reading and writing in fairseq's layout."""
