"""Criterions: criterion(model, sample) -> (loss, sample_size, logging_output)."""
