"""What a translation hub is built from besides its weights: kept on the hub, read by ``export``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqloom.generation.config import GenerationConfig
from seqloom.hub.base import HubBatching
from seqloom.hub.codecs import CodecSpec
from seqloom.models.transformer.config import TransformerConfig


@dataclass(kw_only=True)
class PretrainedSpec:
    """Everything a translation hub is built from, besides the weights (kept on the hub for ``export``)."""

    model_dir: Path
    model_cfg: TransformerConfig | None  # None: not a transformer (a BART-architecture translation model)
    source_lang: str
    target_lang: str
    src_dict_path: Path
    tgt_dict_path: Path
    tokenizer: CodecSpec | None
    bpe: CodecSpec | None
    generation: GenerationConfig
    batching: HubBatching
    left_pad_source: bool = True
    max_source_positions: int = 1024
    max_target_positions: int = 1024
