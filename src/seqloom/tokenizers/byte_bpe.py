"""``--bpe byte_bpe``: a sentencepiece model over byte-encoded text (fairseq's byte-level BPE).

The text is written one character per UTF-8 byte (:func:`seqloom.tokenizers.bytes_bpe.byte_encode`) and cut
into the pieces of ``--sentencepiece-model-path`` (trained on such text); decoding joins the pieces, turns
``▁`` back into spaces and decodes the bytes, keeping the most characters a broken sequence allows. As in
fairseq, a decoded line keeps the leading space of its first ``▁``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file
from seqloom.tokenizers.bytes_bpe import byte_encode, smart_byte_decode
from seqloom.tokenizers.characters_bpe import SPACE, SPACE_ESCAPE


@dataclass(kw_only=True)
class ByteBPEConfig:
    """Options of ``--bpe byte_bpe`` (fairseq's names)."""

    sentencepiece_model_path: Optional[str] = field(
        None, help="the SentencePiece model (.model) that cuts the byte text"
    )


@BPES.register("byte_bpe", config=ByteBPEConfig)
class ByteBPE:
    """``"café"`` -> ``"▁c a f Ã ©"`` (depending on the model)."""

    def __init__(self, cfg: ByteBPEConfig) -> None:
        import sentencepiece as spm

        path = require_file(cfg.sentencepiece_model_path, flag="--sentencepiece-model-path",
                            what="the byte-level sentencepiece model")  # fmt: skip
        self.sp = spm.SentencePieceProcessor(model_file=str(path))

    def encode(self, x: str) -> str:
        return SPACE.join(self.sp.encode(byte_encode(x), out_type=str))

    def decode(self, x: str) -> str:
        return smart_byte_decode(x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE))
