"""Tokenizers and BPE codecs."""
