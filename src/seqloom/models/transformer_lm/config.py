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

    activation_fn: ActivationFn = field("relu", help="activation function to use")
    dropout: float = field(0.1, help="dropout probability")
    attention_dropout: float = field(0.0, help="dropout probability for attention weights")
    activation_dropout: float = field(0.0, help="dropout probability after activation in FFN")
    relu_dropout: float = field(0.0, help="dropout probability after activation in FFN (old name)")
    decoder_embed_dim: int = field(512, help="decoder embedding dimension")
    decoder_output_dim: Optional[int] = field(512, help="decoder output dimension (None: --decoder-embed-dim)")
    decoder_input_dim: Optional[int] = field(512, help="decoder input dimension (None: --decoder-embed-dim)")
    decoder_ffn_embed_dim: int = field(2048, help="decoder embedding dimension for FFN")
    decoder_layers: int = field(6, help="num decoder layers")
    decoder_attention_heads: int = field(8, help="num decoder attention heads")
    decoder_normalize_before: bool = field(False, help="apply layernorm before each decoder block")
    no_decoder_final_norm: bool = field(False, help="don't add an extra layernorm after the last decoder block")
    adaptive_softmax_cutoff: Optional[str] = field(
        None, help="comma separated list of adaptive softmax cutoff points. Must be used with adaptive_loss criterion"
    )
    adaptive_softmax_dropout: float = field(0.0, help="sets adaptive softmax dropout for the tail projections")
    adaptive_softmax_factor: float = field(4.0, help="adaptive input factor")
    no_token_positional_embeddings: bool = field(
        False, help="if set, disables positional embeddings (outside self attention)"
    )
    share_decoder_input_output_embed: bool = field(False, help="share decoder input and output embeddings")
    character_embeddings: bool = field(
        False, help="if set, uses character embedding convolutions to produce token embeddings (not supported)"
    )
    adaptive_input: bool = field(False, help="if set, uses adaptive input")
    adaptive_input_factor: float = field(4.0, help="adaptive input factor")
    adaptive_input_cutoff: Optional[str] = field(None, help="comma separated list of adaptive input cutoff points.")
    tie_adaptive_weights: bool = field(False, help="if set, ties the weights of adaptive softmax and adaptive input")
    tie_adaptive_proj: bool = field(
        False, help="if set, ties the projection weights of adaptive softmax and adaptive input"
    )
    decoder_learned_pos: bool = field(False, help="use learned positional embeddings in the decoder")
    layernorm_embedding: bool = field(False, help="add layernorm to embedding")
    no_scale_embedding: bool = field(False, help="if True, dont scale embeddings")
    checkpoint_activations: bool = field(False, help="checkpoint activations at each layer")
    offload_activations: bool = field(False, help="like --checkpoint-activations (offloading to CPU is not done)")
    scale_attn: bool = field(False, help="NormFormer: add a layer norm after each self-attention")
    scale_fc: bool = field(False, help="NormFormer: add a layer norm between fc1 and fc2")
    scale_heads: bool = field(False, help="NormFormer: learn a scale for each attention head")
    scale_resids: bool = field(False, help="NormFormer: learn a scale for each feature of the feed-forward residual")
    min_params_to_wrap: int = field(
        100_000_000,
        help="minimum number of params for a layer to be wrapped with FSDP() (its own unit under --ddp-backend "
        "fully_sharded; every layer with --checkpoint-activations)",
    )
    decoder_layerdrop: float = field(0.0, help="LayerDrop probability for decoder")
    decoder_layers_to_keep: Optional[str] = field(
        None, help="which layers to *keep* when pruning as a comma-separated list (not supported)"
    )
    quant_noise_pq: float = field(0.0, help="iterative PQ quantization noise at training time (not supported)")
    quant_noise_pq_block_size: int = field(8, help="block size of quantization noise at training time")
    quant_noise_scalar: float = field(0.0, help="scalar quantization noise at training time (not supported)")
    base_layers: int = field(0, help="number of BASE layers in total (not supported)")
    add_bos_token: bool = field(False, help="prepend beginning of sentence token (<s>)")
    tokens_per_sample: int = field(1024, help="max number of tokens per sample for LM dataset")
    max_target_positions: Optional[int] = field(
        None, help="max number of tokens in the target sequence (default: --tokens-per-sample)"
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
