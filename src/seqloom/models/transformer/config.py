"""``TransformerConfig``: the encoder-decoder transformer's options, with fairseq's names and defaults.

Derived sizes follow fairseq's ``base_architecture``: a ``None`` ``decoder_embed_dim`` means "same as
``--encoder-embed-dim``" (so ``--arch transformer --encoder-embed-dim 256`` shrinks the decoder too, as in
fairseq), and ``decoder_input_dim``/``decoder_output_dim`` follow ``decoder_embed_dim``.
:meth:`TransformerConfig.resolved` fills them in; builders and saved checkpoints use the resolved form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import field

ActivationFn = Literal["relu", "relu_squared", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear", "swish"]

DEFAULT_MAX_SOURCE_POSITIONS = 1024
DEFAULT_MAX_TARGET_POSITIONS = 1024


@dataclass(kw_only=True)
class TransformerConfig:
    """Options of ``--arch transformer`` and its presets (fairseq's ``transformer`` model)."""

    activation_fn: ActivationFn = field("relu", help="activation function to use")
    dropout: float = field(0.1, help="dropout probability")
    attention_dropout: float = field(0.0, help="dropout probability for attention weights")
    activation_dropout: float = field(
        0.0, help="dropout probability after activation in FFN", aliases=("--relu-dropout",)
    )
    relu_dropout: float = field(0.0, help="old name of --activation-dropout, read from old checkpoints", cli=False)
    adaptive_input: bool = field(False, help="if set, uses adaptive input (not supported)")

    encoder_embed_path: Optional[str] = field(None, help="path to pre-trained encoder embedding")
    encoder_embed_dim: int = field(512, help="encoder embedding dimension")
    encoder_ffn_embed_dim: int = field(2048, help="encoder embedding dimension for FFN")
    encoder_layers: int = field(6, help="num encoder layers")
    encoder_attention_heads: int = field(8, help="num encoder attention heads")
    encoder_normalize_before: bool = field(False, help="apply layernorm before each encoder block")
    encoder_learned_pos: bool = field(False, help="use learned positional embeddings in the encoder")
    encoder_layerdrop: float = field(0.0, help="LayerDrop probability for encoder")
    encoder_layers_to_keep: Optional[str] = field(
        None, help="which layers to *keep* when pruning as a comma-separated list"
    )
    max_source_positions: int = field(DEFAULT_MAX_SOURCE_POSITIONS, help="max number of tokens in the source sequence")

    decoder_embed_path: Optional[str] = field(None, help="path to pre-trained decoder embedding")
    decoder_embed_dim: Optional[int] = field(
        None, help="decoder embedding dimension; None: that of --encoder-embed-dim"
    )
    decoder_ffn_embed_dim: Optional[int] = field(
        None, help="decoder embedding dimension for FFN; None: that of --encoder-ffn-embed-dim"
    )
    decoder_layers: int = field(6, help="num decoder layers")
    decoder_attention_heads: int = field(8, help="num decoder attention heads")
    decoder_normalize_before: bool = field(False, help="apply layernorm before each decoder block")
    decoder_learned_pos: bool = field(False, help="use learned positional embeddings in the decoder")
    decoder_layerdrop: float = field(0.0, help="LayerDrop probability for decoder")
    decoder_layers_to_keep: Optional[str] = field(
        None, help="which layers to *keep* when pruning as a comma-separated list"
    )
    decoder_input_dim: Optional[int] = field(None, help="decoder input dimension; None: that of --decoder-embed-dim")
    decoder_output_dim: Optional[int] = field(
        None,
        help="decoder output dimension (extra linear layer if different from decoder embed dim); None: --decoder-embed-dim",
    )
    max_target_positions: int = field(DEFAULT_MAX_TARGET_POSITIONS, help="max number of tokens in the target sequence")

    share_decoder_input_output_embed: bool = field(False, help="share decoder input and output embeddings")
    share_all_embeddings: bool = field(
        False, help="share encoder, decoder and output embeddings (requires shared dictionary and embed dim)"
    )
    merge_src_tgt_embed: bool = field(False, help="merge source and target embedding tables (not supported)")
    no_token_positional_embeddings: bool = field(
        False, help="if set, disables positional embeddings (outside self attention)"
    )
    adaptive_softmax_cutoff: Optional[str] = field(
        None, help="comma separated list of adaptive softmax cutoff points (not supported)"
    )
    adaptive_softmax_dropout: float = field(0.0, help="sets adaptive softmax dropout for the tail projections")
    adaptive_softmax_factor: float = field(4.0, help="adaptive input factor")
    layernorm_embedding: bool = field(False, help="add layernorm to embedding")
    tie_adaptive_weights: bool = field(False, help="if set, ties the weights of adaptive softmax and adaptive input")
    tie_adaptive_proj: bool = field(
        False, help="if set, ties the projection weights of adaptive softmax and adaptive input"
    )
    no_scale_embedding: bool = field(False, help="if set, dont scale embeddings")
    checkpoint_activations: bool = field(
        False,
        help="checkpoint activations at each layer, which saves GPU memory usage at the cost of some additional compute",
    )
    offload_activations: bool = field(False, help="like --checkpoint-activations (offloading to CPU is not done)")
    no_cross_attention: bool = field(False, help="do not perform cross-attention")
    cross_self_attention: bool = field(False, help="perform cross+self-attention (not supported)")
    no_decoder_final_norm: bool = field(False, help="don't add an extra layernorm after the last decoder block")
    alignment_heads: Optional[int] = field(
        None, help="Number of cross attention heads per layer to supervised with alignments (transformer_align: 1)"
    )
    alignment_layer: Optional[int] = field(
        None,
        help="Layer number which has to be supervised. 0 corresponding to the bottommost layer. "
        "(transformer_align: 4; default: the last layer)",
    )
    full_context_alignment: bool = field(
        False, help="Whether or not alignment is supervised conditioned on the full target context."
    )
    quant_noise_pq: float = field(0.0, help="iterative PQ quantization noise at training time (not supported)")
    quant_noise_pq_block_size: int = field(8, help="block size of quantization noise at training time")
    quant_noise_scalar: float = field(0.0, help="scalar quantization noise and scalar quantization at training time")
    min_params_to_wrap: int = field(
        100_000_000,
        help="minimum number of params for a layer to be wrapped with FSDP() (its own unit under --ddp-backend "
        "fully_sharded; every layer with --checkpoint-activations)",
    )
    # NormFormer: flags of language models (fairseq's translation models read them as off); not CLI flags here
    scale_attn: bool = field(False, help="NormFormer: a layer norm after each self-attention", cli=False)
    scale_fc: bool = field(False, help="NormFormer: a layer norm between fc1 and fc2", cli=False)
    scale_heads: bool = field(False, help="NormFormer: a learned scale per attention head", cli=False)
    scale_resids: bool = field(False, help="NormFormer: a learned scale per feature of the FFN residual", cli=False)

    def resolved(self) -> TransformerConfig:
        """A copy with every derived option filled in, as fairseq's ``base_architecture`` leaves its args."""
        dec_embed = self.decoder_embed_dim if self.decoder_embed_dim is not None else self.encoder_embed_dim
        dec_ffn = self.decoder_ffn_embed_dim if self.decoder_ffn_embed_dim is not None else self.encoder_ffn_embed_dim
        return dataclasses.replace(
            self,
            decoder_embed_dim=dec_embed,
            decoder_ffn_embed_dim=dec_ffn,
            decoder_input_dim=self.decoder_input_dim if self.decoder_input_dim is not None else dec_embed,
            decoder_output_dim=self.decoder_output_dim if self.decoder_output_dim is not None else dec_embed,
            share_decoder_input_output_embed=self.share_decoder_input_output_embed or self.share_all_embeddings,
            activation_dropout=self.activation_dropout or self.relu_dropout,
            checkpoint_activations=self.checkpoint_activations or self.offload_activations,
        )

    def unsupported(self) -> list[str]:
        """The flags set here that seqloom's transformer does not implement (empty when all is supported)."""
        checks = {
            "--adaptive-input": self.adaptive_input,
            "--adaptive-softmax-cutoff": self.adaptive_softmax_cutoff is not None,
            "--merge-src-tgt-embed": self.merge_src_tgt_embed,
            "--cross-self-attention": self.cross_self_attention,
            "--quant-noise-pq": self.quant_noise_pq > 0,
            "--quant-noise-scalar": self.quant_noise_scalar > 0,
            "--encoder-layers-to-keep": self.encoder_layers_to_keep is not None,
            "--decoder-layers-to-keep": self.decoder_layers_to_keep is not None,
        }
        return [flag for flag, on in checks.items() if on]
