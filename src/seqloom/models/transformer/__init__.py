"""fairseq's encoder-decoder ``transformer``: config, presets, builder, model and fairseq interop."""

from seqloom.models.transformer import presets
from seqloom.models.transformer.builder import build_model
from seqloom.models.transformer.config import TransformerConfig
from seqloom.models.transformer.interop import (
    config_from_checkpoint,
    fairseq_args_namespace,
    load_fairseq_model,
    upgrade_state_dict,
)
from seqloom.models.transformer.model import TransformerModel
from seqloom.modules.kv_cache import KVCache
from seqloom.modules.transformer import DecoderOut, EncoderOut

__all__ = [
    "DecoderOut",
    "EncoderOut",
    "KVCache",
    "TransformerConfig",
    "TransformerModel",
    "build_model",
    "config_from_checkpoint",
    "fairseq_args_namespace",
    "load_fairseq_model",
    "presets",
    "upgrade_state_dict",
]
