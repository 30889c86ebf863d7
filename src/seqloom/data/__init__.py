"""Dictionaries, indexed datasets, datasets, batching and iterators."""
