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

    activation_fn: ActivationFn = field(
        "relu", help="nonlinearity between the two linear layers of each feed-forward block"
    )
    dropout: float = field(
        0.1, help="probability of zeroing each value of the embeddings and of every layer's output while training"
    )
    attention_dropout: float = field(0.0, help="probability of zeroing each attention weight while training")
    activation_dropout: float = field(
        0.0,
        help="probability of zeroing each value after the feed-forward nonlinearity while training",
        aliases=("--relu-dropout",),
    )
    relu_dropout: float = field(
        0.0, help="fairseq's former name of --activation-dropout, still read from old checkpoints", cli=False
    )
    adaptive_input: bool = field(False, help="adaptive input embeddings (not supported: refused)")

    encoder_embed_path: Optional[str] = field(
        None, help="text file of pretrained source embeddings (word2vec text format) to start from"
    )
    encoder_embed_dim: int = field(512, help="width of the encoder's embeddings and hidden states")
    encoder_ffn_embed_dim: int = field(2048, help="inner width of each encoder feed-forward block")
    encoder_layers: int = field(6, help="number of encoder layers")
    encoder_attention_heads: int = field(8, help="number of attention heads in each encoder layer")
    encoder_normalize_before: bool = field(
        False, help="normalize at the input of each encoder sublayer (pre-norm) instead of after its residual sum"
    )
    encoder_learned_pos: bool = field(
        False, help="learn the encoder's position embeddings instead of using fixed sinusoids"
    )
    encoder_layerdrop: float = field(0.0, help="probability of skipping each whole encoder layer in a training step")
    encoder_layers_to_keep: Optional[str] = field(
        None,
        help="comma-separated numbers of the encoder layers to keep when loading, the others removed (for LayerDrop models)",
    )
    max_source_positions: int = field(
        DEFAULT_MAX_SOURCE_POSITIONS,
        help="longest source, in tokens, that the model takes (sizes the learned position table)",
    )

    decoder_embed_path: Optional[str] = field(
        None, help="text file of pretrained target embeddings (word2vec text format) to start from"
    )
    decoder_embed_dim: Optional[int] = field(
        None, help="width of the decoder's embeddings and hidden states (unset: --encoder-embed-dim)"
    )
    decoder_ffn_embed_dim: Optional[int] = field(
        None, help="inner width of each decoder feed-forward block (unset: --encoder-ffn-embed-dim)"
    )
    decoder_layers: int = field(6, help="number of decoder layers")
    decoder_attention_heads: int = field(8, help="number of attention heads in each decoder layer")
    decoder_normalize_before: bool = field(
        False, help="normalize at the input of each decoder sublayer (pre-norm) instead of after its residual sum"
    )
    decoder_learned_pos: bool = field(
        False, help="learn the decoder's position embeddings instead of using fixed sinusoids"
    )
    decoder_layerdrop: float = field(0.0, help="probability of skipping each whole decoder layer in a training step")
    decoder_layers_to_keep: Optional[str] = field(
        None,
        help="comma-separated numbers of the decoder layers to keep when loading, the others removed (for LayerDrop models)",
    )
    decoder_input_dim: Optional[int] = field(
        None,
        help="width the decoder's embeddings are projected to before the first layer (unset: --decoder-embed-dim, no projection)",
    )
    decoder_output_dim: Optional[int] = field(
        None,
        help="width of the decoder's last hidden state before the output layer; a value other than --decoder-embed-dim adds a projection (unset: --decoder-embed-dim)",
    )
    max_target_positions: int = field(
        DEFAULT_MAX_TARGET_POSITIONS,
        help="longest target, in tokens, that the model takes (sizes the learned position table)",
    )

    share_decoder_input_output_embed: bool = field(
        False, help="use the decoder's embedding matrix as its output layer too"
    )
    share_all_embeddings: bool = field(
        False,
        help="one embedding matrix for the encoder, the decoder and the output layer (needs a joined dictionary and equal widths)",
    )
    merge_src_tgt_embed: bool = field(False, help="one table for source and target embeddings (not supported: refused)")
    no_token_positional_embeddings: bool = field(False, help="add no position embeddings to the token embeddings")
    adaptive_softmax_cutoff: Optional[str] = field(
        None, help="adaptive softmax frequency-band boundaries, comma-separated (not supported: refused)"
    )
    adaptive_softmax_dropout: float = field(0.0, help="dropout inside the adaptive softmax's tail projections")
    adaptive_softmax_factor: float = field(
        4.0, help="factor by which each adaptive band's width shrinks from the one before"
    )
    layernorm_embedding: bool = field(
        False, help="normalize the embeddings (after positions are added) with a layer norm"
    )
    tie_adaptive_weights: bool = field(
        False, help="share the embedding weights of the adaptive input and the adaptive softmax"
    )
    tie_adaptive_proj: bool = field(
        False, help="share the projections of the adaptive input and the adaptive softmax as well"
    )
    no_scale_embedding: bool = field(
        False, help="leave the token embeddings unscaled (otherwise multiplied by the square root of their width)"
    )
    checkpoint_activations: bool = field(
        False,
        help="recompute each layer's activations in the backward pass instead of storing them: less memory, more compute",
    )
    offload_activations: bool = field(False, help="like --checkpoint-activations (offloading to CPU is not done)")
    no_cross_attention: bool = field(False, help="leave out the decoder's attention over the encoder output")
    cross_self_attention: bool = field(
        False, help="let decoder self-attention also see the encoder output (not supported: refused)"
    )
    no_decoder_final_norm: bool = field(
        False, help="leave out the layer norm after the last decoder layer (pre-norm models only)"
    )
    alignment_heads: Optional[int] = field(
        None,
        help="how many cross-attention heads of --alignment-layer learn the given alignments (transformer_align: 1)",
    )
    alignment_layer: Optional[int] = field(
        None,
        help="decoder layer whose cross-attention learns the alignments, counted from 0 at the bottom (transformer_align: 4; unset: the last layer)",
    )
    full_context_alignment: bool = field(
        False, help="compute the alignment attention with the whole target visible, without the causal mask"
    )
    quant_noise_pq: float = field(
        0.0,
        help="probability of product-quantization noise on the weights while training (not supported: refused when above 0)",
    )
    quant_noise_pq_block_size: int = field(8, help="block size of that product-quantization noise")
    quant_noise_scalar: float = field(
        0.0, help="scalar quantization noise while training (not supported: refused when above 0)"
    )
    min_params_to_wrap: int = field(
        100_000_000,
        help="parameter count from which a layer is its own FSDP unit under --ddp-backend fully_sharded (with --checkpoint-activations every layer is)",
    )
    # NormFormer: flags of language models (fairseq's translation models read them as off); not CLI flags here
    scale_attn: bool = field(False, help="NormFormer: a layer norm after each self-attention", cli=False)
    scale_fc: bool = field(False, help="NormFormer: a layer norm between the two feed-forward layers", cli=False)
    scale_heads: bool = field(False, help="NormFormer: a learned scale per attention head", cli=False)
    scale_resids: bool = field(
        False, help="NormFormer: a learned scale per feature of the feed-forward residual", cli=False
    )

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
