"""fairseq's BART: config and presets, builder, model with classification heads, fairseq interop and hub."""

from seqloom.models.bart import config
from seqloom.models.bart.builder import build_model
from seqloom.models.bart.config import BARTConfig
from seqloom.models.bart.model import BARTModel, ClassificationHead

__all__ = ["BARTConfig", "BARTModel", "ClassificationHead", "build_model", "config"]
