"""``RobertaConfig`` and fairseq's RoBERTa presets (``roberta``, ``roberta_base``, ``roberta_large``,
``roberta_prenorm``, ``xlm``).

RoBERTa is a post-norm transformer encoder (pre-norm for ``roberta_prenorm``) with learned positions (offset
``padding_idx + 1``: 514 rows for 512 positions), a layer norm on the unscaled embeddings, GELU, a masked-LM
head whose output matrix is the token embedding (``--untie-weights-roberta`` gives it its own), and named
sentence-classification heads that read the ``<s>`` position.

``--max-positions`` unset means ``--tokens-per-sample`` (the masked_lm task's flag, which it shares), as
fairseq's ``RobertaModel.build_model`` fills it in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Optional

from seqloom.config.options import field
from seqloom.models.transformer_lm.config import ActivationFn
from seqloom.registry import register_architecture

MODEL = "roberta"


@dataclass(kw_only=True)
class RobertaConfig:
    """Options of ``--arch roberta*`` / ``xlm`` (fairseq's names; defaults of fairseq's ``base_architecture``)."""

    encoder_layers: int = field(12, help="number of encoder layers")
    encoder_embed_dim: int = field(768, help="encoder embedding dimension")
    encoder_ffn_embed_dim: int = field(3072, help="encoder embedding dimension for FFN")
    encoder_attention_heads: int = field(12, help="number of encoder attention heads")
    activation_fn: ActivationFn = field("gelu", help="activation function of the layers and the masked-LM head")
    pooler_activation_fn: ActivationFn = field("tanh", help="activation function of the classification heads")
    encoder_normalize_before: bool = field(False, help="apply layernorm before each encoder block")
    layernorm_embedding: bool = field(True, help="add layernorm to embedding")
    dropout: float = field(0.1, help="dropout probability")
    attention_dropout: float = field(0.1, help="dropout probability for attention weights")
    activation_dropout: float = field(0.0, help="dropout probability after activation in FFN")
    pooler_dropout: float = field(0.0, help="dropout probability in the classification heads")
    max_positions: Optional[int] = field(None, help="number of learned positions (default: --tokens-per-sample)")
    tokens_per_sample: int = field(1024, help="max number of tokens per sample (the masked_lm task's)")
    load_checkpoint_heads: bool = field(False, help="(re-)register and load the classification heads of the checkpoint")
    untie_weights_roberta: bool = field(False, help="give the masked-LM head its own output matrix (not the embedding)")
    encoder_layerdrop: float = field(0.0, help="LayerDrop probability for encoder")
    encoder_layers_to_keep: Optional[str] = field(None, help="which layers to keep when pruning (not supported)")
    quant_noise_pq: float = field(0.0, help="iterative PQ quantization noise at training time (not supported)")
    quant_noise_pq_block_size: int = field(8, help="block size of quantization noise at training time")
    quant_noise_scalar: float = field(0.0, help="scalar quantization noise at training time (not supported)")
    spectral_norm_classification_head: bool = field(
        False, help="apply spectral normalization to the output layer of the classification heads"
    )
    no_token_positional_embeddings: bool = field(False, help="if set, the encoder has no positional embeddings")
    encoder_learned_pos: bool = field(True, help="use learned positional embeddings in the encoder")
    no_scale_embedding: bool = field(True, help="if True, do not scale embeddings by sqrt(dim)")
    checkpoint_activations: bool = field(False, help="checkpoint activations at each layer")
    min_params_to_wrap: int = field(
        100_000_000, help="minimum number of params for a layer to be wrapped with FSDP() (--ddp-backend fully_sharded)"
    )
    mha_reg_scale_factor: float = field(0.0, help="scale of the attention heads' regularization (not supported)")
    ffn_reg_scale_factor: float = field(0.0, help="scale of the FFN blocks' regularization (not supported)")
    mha_heads_to_keep: int = field(-1, help="attention heads to keep when pruning (not supported)")
    ffn_blocks_to_remove: int = field(-1, help="FFN blocks to remove when pruning (not supported)")

    def resolved(self) -> RobertaConfig:
        """A copy with ``max_positions`` filled in (``--tokens-per-sample`` when unset)."""
        n = self.max_positions if self.max_positions is not None else self.tokens_per_sample
        return dataclasses.replace(self, max_positions=n)

    def check(self) -> None:
        """Raises for the flags seqloom's RoBERTa does not implement, naming them."""
        flags = {
            "--encoder-layers-to-keep": self.encoder_layers_to_keep is not None,
            "--quant-noise-pq": self.quant_noise_pq > 0,
            "--quant-noise-scalar": self.quant_noise_scalar > 0,
            "--mha-reg-scale-factor": self.mha_reg_scale_factor != 0,
            "--ffn-reg-scale-factor": self.ffn_reg_scale_factor != 0,
            "--mha-heads-to-keep": self.mha_heads_to_keep != -1,
            "--ffn-blocks-to-remove": self.ffn_blocks_to_remove != -1,
        }
        unsupported = [flag for flag, on in flags.items() if on]
        if unsupported:
            raise NotImplementedError(f"roberta: {', '.join(unsupported)} not supported by seqloom; drop the flag")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                f"roberta: --encoder-embed-dim {self.encoder_embed_dim} is not divisible by "
                f"--encoder-attention-heads {self.encoder_attention_heads}"
            )


@register_architecture(MODEL, "roberta")
def roberta() -> RobertaConfig:
    """RoBERTa base: 12 post-norm layers, d768, FFN 3072, 12 heads (125M parameters with the GPT-2 vocabulary)."""
    return RobertaConfig()


@register_architecture(MODEL, "roberta_base")
def roberta_base() -> RobertaConfig:
    """The same as ``roberta``."""
    return RobertaConfig()


@register_architecture(MODEL, "roberta_prenorm")
def roberta_prenorm() -> RobertaConfig:
    """Pre-norm layers and a final layer norm instead of the embedding layer norm."""
    return replace(RobertaConfig(), layernorm_embedding=False, encoder_normalize_before=True)


@register_architecture(MODEL, "roberta_large")
def roberta_large() -> RobertaConfig:
    """RoBERTa large: 24 layers, d1024, FFN 4096, 16 heads (355M parameters)."""
    return replace(
        RobertaConfig(),
        encoder_layers=24,
        encoder_embed_dim=1024,
        encoder_ffn_embed_dim=4096,
        encoder_attention_heads=16,
    )


@register_architecture(MODEL, "xlm")
def xlm() -> RobertaConfig:
    """XLM-R's shape: 16 layers, d1280, FFN 5120, 16 heads (xlmr.base/large checkpoints set their own sizes)."""
    return replace(
        RobertaConfig(),
        encoder_layers=16,
        encoder_embed_dim=1280,
        encoder_ffn_embed_dim=5120,
        encoder_attention_heads=16,
    )
