"""Criterions: criterion(model, sample) -> (loss, sample_size, logging_output)."""

from seqloom.criterions.base import DISPLAY_ROUND, Criterion, LoggingOutput, perplexity
from seqloom.criterions.build import build_criterion

__all__ = ["DISPLAY_ROUND", "Criterion", "LoggingOutput", "build_criterion", "perplexity"]
