"""Sequence generation: search strategies, the decoding loop, hypotheses."""
