"""fairseq's RoBERTa and XLM-R: config and presets, builder, model with LM and classification heads, interop, hub."""

from seqloom.models.roberta import config
from seqloom.models.roberta.builder import build_model
from seqloom.models.roberta.config import RobertaConfig
from seqloom.models.roberta.model import ClassificationHead, LMHead, RobertaModel

__all__ = ["ClassificationHead", "LMHead", "RobertaConfig", "RobertaModel", "build_model", "config"]
