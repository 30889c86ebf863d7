"""Reusable layers: attention, positions, masks, transformer layers, KV cache."""
