"""``TransformerLMConfig``: the decoder-only ``transformer_lm``'s options, fairseq's names and defaults.

The defaults are those of fairseq's ``TransformerLanguageModelConfig``, which is what ``--arch transformer_lm``
gives (its arch function is a no-op): post-norm layers and ``decoder_input_dim``/``decoder_output_dim``
fixed at 512 even when ``--decoder-embed-dim`` changes (then ``project_in_dim``/``project_out_dim`` map
between them). The other presets follow fairseq's ``base_lm_architecture``: pre-norm, and ``None`` input and
output dims, meaning "same as ``--decoder-embed-dim``". :meth:`TransformerLMConfig.resolved` fills those in.

``add_bos_token``, ``tokens_per_sample`` and ``max_target_positions`` are shared with the
``language_modeling`` task (one flag, read by both), as fairseq's ``II("task.…")`` interpolations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import field

ActivationFn = Literal["relu", "relu_squared", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear", "swish"]

DEFAULT_MAX_TARGET_POSITIONS = 1024


def parse_cutoff(text: str | None, *, flag: str) -> list[int]:
    """``"20000,60000"`` (fairseq's spelling, brackets allowed) -> ``[20000, 60000]``; errors name the flag."""
    if text is None:
        return []
    body = str(text).strip().strip("[]()")
    try:
        return [int(part) for part in body.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma separated integers such as 20000,60000") from None


@dataclass(kw_only=True)
class TransformerLMConfig:
    """Options of ``--arch transformer_lm`` and its presets (fairseq's ``transformer_lm`` model)."""

    activation_fn: ActivationFn = field(
        "relu", help="nonlinearity between the two linear layers of each feed-forward block"
    )
    dropout: float = field(
        0.1, help="probability of zeroing each value of the embeddings and of every layer's output while training"
    )
    attention_dropout: float = field(0.0, help="probability of zeroing each attention weight while training")
    activation_dropout: float = field(
        0.0, help="probability of zeroing each value after the feed-forward nonlinearity while training"
    )
    relu_dropout: float = field(
        0.0, help="fairseq's former name of --activation-dropout, still read from old checkpoints"
    )
    decoder_embed_dim: int = field(512, help="width of the embeddings and hidden states")
    decoder_output_dim: Optional[int] = field(
        512,
        help="width of the last hidden state before the output layer; a value other than --decoder-embed-dim adds a projection",
    )
    decoder_input_dim: Optional[int] = field(
        512,
        help="width the embeddings are projected to before the first layer; equal to --decoder-embed-dim means no projection",
    )
    decoder_ffn_embed_dim: int = field(2048, help="inner width of each feed-forward block")
    decoder_layers: int = field(6, help="number of layers")
    decoder_attention_heads: int = field(8, help="number of attention heads in each layer")
    decoder_normalize_before: bool = field(
        False, help="normalize at the input of each sublayer (pre-norm) instead of after its residual sum"
    )
    no_decoder_final_norm: bool = field(
        False, help="leave out the layer norm after the last layer (pre-norm models only)"
    )
    adaptive_softmax_cutoff: Optional[str] = field(
        None,
        help="token ranks, comma-separated, where the adaptive softmax starts a new, narrower band (train with --criterion adaptive_loss)",
    )
    adaptive_softmax_dropout: float = field(0.0, help="dropout inside the adaptive softmax's tail projections")
    adaptive_softmax_factor: float = field(
        4.0, help="factor by which each adaptive softmax band's width shrinks from the one before"
    )
    no_token_positional_embeddings: bool = field(False, help="add no position embeddings to the token embeddings")
    share_decoder_input_output_embed: bool = field(False, help="use the embedding matrix as the output layer too")
    character_embeddings: bool = field(
        False, help="build token embeddings from character convolutions (not supported: refused)"
    )
    adaptive_input: bool = field(False, help="embed tokens in frequency bands of decreasing width (adaptive input)")
    adaptive_input_factor: float = field(
        4.0, help="factor by which each adaptive input band's width shrinks from the one before"
    )
    adaptive_input_cutoff: Optional[str] = field(
        None, help="token ranks, comma-separated, where the adaptive input starts a new, narrower band"
    )
    tie_adaptive_weights: bool = field(
        False, help="share the embedding weights of the adaptive input and the adaptive softmax"
    )
    tie_adaptive_proj: bool = field(
        False, help="share the projections of the adaptive input and the adaptive softmax as well"
    )
    decoder_learned_pos: bool = field(False, help="learn the position embeddings instead of using fixed sinusoids")
    layernorm_embedding: bool = field(
        False, help="normalize the embeddings (after positions are added) with a layer norm"
    )
    no_scale_embedding: bool = field(
        False, help="leave the token embeddings unscaled (otherwise multiplied by the square root of their width)"
    )
    checkpoint_activations: bool = field(
        False,
        help="recompute each layer's activations in the backward pass instead of storing them: less memory, more compute",
    )
    offload_activations: bool = field(False, help="like --checkpoint-activations (offloading to CPU is not done)")
    scale_attn: bool = field(False, help="NormFormer: a layer norm after each self-attention")
    scale_fc: bool = field(False, help="NormFormer: a layer norm between the two feed-forward layers")
    scale_heads: bool = field(False, help="NormFormer: a learned scale per attention head")
    scale_resids: bool = field(False, help="NormFormer: a learned scale per feature of the feed-forward residual")
    min_params_to_wrap: int = field(
        100_000_000,
        help="parameter count from which a layer is its own FSDP unit under --ddp-backend fully_sharded (with --checkpoint-activations every layer is)",
    )
    decoder_layerdrop: float = field(0.0, help="probability of skipping each whole layer in a training step")
    decoder_layers_to_keep: Optional[str] = field(
        None, help="comma-separated numbers of the layers to keep when loading (not supported: refused)"
    )
    quant_noise_pq: float = field(
        0.0,
        help="probability of product-quantization noise on the weights while training (not supported: refused when above 0)",
    )
    quant_noise_pq_block_size: int = field(8, help="block size of that product-quantization noise")
    quant_noise_scalar: float = field(
        0.0, help="scalar quantization noise while training (not supported: refused when above 0)"
    )
    base_layers: int = field(0, help="number of BASE mixture-of-experts layers (not supported: refused when above 0)")
    add_bos_token: bool = field(False, help="start every sample with the beginning-of-sentence symbol <s>")
    tokens_per_sample: int = field(1024, help="length of the model's input blocks, in tokens")
    max_target_positions: Optional[int] = field(
        None, help="longest input, in tokens, that the model takes (unset: --tokens-per-sample)"
    )

    def resolved(self) -> TransformerLMConfig:
        """A copy with the derived options filled in (input/output dims, positions, dropout aliases)."""
        max_positions = self.max_target_positions
        return dataclasses.replace(
            self,
            decoder_input_dim=self.decoder_input_dim if self.decoder_input_dim is not None else self.decoder_embed_dim,
            decoder_output_dim=(
                self.decoder_output_dim if self.decoder_output_dim is not None else self.decoder_embed_dim
            ),
            max_target_positions=max_positions if max_positions is not None else self.tokens_per_sample,
            activation_dropout=self.activation_dropout or self.relu_dropout,
            checkpoint_activations=self.checkpoint_activations or self.offload_activations,
        )

    def unsupported(self) -> list[str]:
        """The flags set here that seqloom's ``transformer_lm`` does not implement."""
        checks = {
            "--character-embeddings": self.character_embeddings,
            "--decoder-layers-to-keep": self.decoder_layers_to_keep is not None,
            "--quant-noise-pq": self.quant_noise_pq > 0,
            "--quant-noise-scalar": self.quant_noise_scalar > 0,
            "--base-layers": self.base_layers > 0,
        }
        return [flag for flag, on in checks.items() if on]

    def check(self) -> None:
        """Raises for unsupported flags and for fairseq's adaptive-weight tying preconditions."""
        unsupported = self.unsupported()
        if unsupported:
            raise NotImplementedError(
                f"transformer_lm: {', '.join(unsupported)} not supported by seqloom; drop the flag"
            )
        if self.tie_adaptive_weights:
            problems = []
            if not self.adaptive_input:
                problems.append("--adaptive-input")
            if self.adaptive_input_factor != self.adaptive_softmax_factor:
                problems.append("--adaptive-input-factor equal to --adaptive-softmax-factor")
            if parse_cutoff(self.adaptive_input_cutoff, flag="--adaptive-input-cutoff") != parse_cutoff(
                self.adaptive_softmax_cutoff, flag="--adaptive-softmax-cutoff"
            ):
                problems.append("--adaptive-input-cutoff equal to --adaptive-softmax-cutoff")
            if self.decoder_input_dim != self.decoder_output_dim:
                problems.append("--decoder-input-dim equal to --decoder-output-dim")
            if problems:
                raise ValueError(f"--tie-adaptive-weights needs {', '.join(problems)}")
        if self.adaptive_input and self.adaptive_input_cutoff is None:
            raise ValueError("--adaptive-input needs --adaptive-input-cutoff (e.g. 20000,60000)")
