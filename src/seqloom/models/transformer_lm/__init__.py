"""fairseq's decoder-only ``transformer_lm``: config, presets, builder, model, fairseq interop and hub."""

from seqloom.models.transformer_lm import presets
from seqloom.models.transformer_lm.builder import build_model
from seqloom.models.transformer_lm.config import TransformerLMConfig
from seqloom.models.transformer_lm.interop import config_from_checkpoint, load_fairseq_lm, model_from_state
from seqloom.models.transformer_lm.model import LMDecoder, TransformerLanguageModel, TransformerLM

__all__ = [
    "LMDecoder",
    "TransformerLM",
    "TransformerLMConfig",
    "TransformerLanguageModel",
    "build_model",
    "config_from_checkpoint",
    "load_fairseq_lm",
    "model_from_state",
    "presets",
]
