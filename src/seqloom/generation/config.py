"""Options of ``seqloom generate`` / ``interactive``: fairseq's generation, eval and interactive groups."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import field

AlignmentKind = Literal["hard", "soft"]


@dataclass(kw_only=True)
class GenerationConfig:
    """Search and length options of the sequence generator (fairseq's ``generation`` group)."""

    beam: int = field(5, help="beam size")
    nbest: int = field(1, help="number of hypotheses to output")
    max_len_a: float = field(0.0, help="generate sequences of maximum length ax + b, where x is the source length")
    max_len_b: int = field(200, help="generate sequences of maximum length ax + b, where x is the source length")
    min_len: int = field(1, help="minimum generation length (not counting end-of-sentence)")
    match_source_len: bool = field(False, help="generations should match the source length")
    unnormalized: bool = field(False, help="compare unnormalized hypothesis scores")
    no_early_stop: bool = field(False, help="deprecated and ignored, as in fairseq")
    no_beamable_mm: bool = field(False, help="accepted for compatibility; seqloom has no beamable matmul")
    lenpen: float = field(1.0, help="length penalty: <1.0 favors shorter, >1.0 favors longer sentences")
    unkpen: float = field(0.0, help="unknown word penalty: <0 produces more unks, >0 produces fewer")
    replace_unk: Optional[str] = field(
        None, help="perform unknown replacement (optionally with alignment dictionary)", const="@@ "
    )
    sacrebleu: bool = field(False, help="score with sacrebleu (deprecated: use --scoring sacrebleu)")
    score_reference: bool = field(False, help="just score the reference translation")
    prefix_size: int = field(0, help="initialize generation by target prefix of given length")
    constraints: Optional[Literal["ordered", "unordered"]] = field(
        None,
        help="enables lexically constrained decoding (interactive: constraints are tab-separated after the source)",
        const="ordered",
    )
    no_repeat_ngram_size: int = field(
        0, help="ngram blocking such that this size ngram cannot be repeated in the generation"
    )
    no_repeat_ngram_mode: Literal["fairseq", "strict"] = field(
        "strict",
        help="strict: ban tokens that would repeat an n-gram, as the option promises; fairseq: reproduce fairseq "
        "0.12's CPU check, which blocks nothing (its outputs, repeats included)",
    )
    sampling: bool = field(False, help="sample hypotheses instead of using beam search")
    sampling_topk: int = field(-1, help="sample from top K likely next words instead of all words")
    sampling_topp: float = field(-1.0, help="sample from the smallest set whose cumulative probability mass exceeds p")
    temperature: float = field(1.0, help="temperature for generation")
    diverse_beam_groups: int = field(-1, help="number of groups for Diverse Beam Search")
    diverse_beam_strength: float = field(0.5, help="strength of diversity penalty for Diverse Beam Search")
    diversity_rate: float = field(
        -1.0, help="strength of diversity penalty for Diverse Siblings Search (-1: off; 0 equals beam search)"
    )
    print_alignment: Optional[AlignmentKind] = field(
        None,
        help="print alignments from the attention (hard: source-target index pairs; soft: probabilities)",
        const="hard",
    )
    retain_dropout: bool = field(False, help="use dropout at inference time")
    retain_dropout_modules: Optional[str] = field(
        None,
        help="if set, only retain dropout for the specified modules; if not set, then dropout will be retained for "
        "all modules (fairseq's module class names, e.g. TransformerEncoderLayerBase,MultiheadAttention)",
    )
    lm_path: Optional[str] = field(
        None, help="path to a language model checkpoint (over the target dictionary) for shallow fusion"
    )
    lm_weight: float = field(0.0, help="weight of the language model's log-probs in shallow fusion (--lm-path)")


@dataclass(kw_only=True)
class CommonEvalConfig:
    """Which checkpoints to load and how to print (fairseq's ``common_eval`` group)."""

    path: Optional[str] = field(None, help="path(s) to model file(s), colon separated")
    post_process: Optional[str] = field(
        None,
        help="post-process text by removing BPE ('subword_nmt', 'sentencepiece', 'letter', or a BPE symbol)",
        aliases=("--remove-bpe",),
        const="subword_nmt",
    )
    quiet: bool = field(False, help="only print final scores")
    model_overrides: str = field("{}", help="a dictionary used to override model args at generation time")
    results_path: Optional[str] = field(None, help="path to save eval results (writes generate-{subset}.txt)")
    checkpoint_suffix: str = field("", help="read each --path file with this suffix before .pt (x.pt -> x{suffix}.pt)")

    @property
    def model_path(self) -> Optional[str]:
        """``--path`` with ``--checkpoint-suffix`` applied to each file (fairseq's ``replace(".pt", suffix + ".pt")``)."""
        if not self.path or not self.checkpoint_suffix:
            return self.path
        return os.pathsep.join(p.replace(".pt", self.checkpoint_suffix + ".pt") for p in self.path.split(os.pathsep))


@dataclass(kw_only=True)
class ScoringConfig:
    """The metric of the closing line (fairseq's ``--scoring`` and its options)."""

    scoring: Literal["bleu", "sacrebleu", "chrf", "wer"] = field("bleu", help="the metric of the closing line")
    sacrebleu_tokenizer: str = field("13a", help="sacrebleu tokenizer (--scoring sacrebleu)")
    sacrebleu_lowercase: bool = field(False, help="lowercase before sacrebleu scoring")
    sacrebleu_char_level: bool = field(False, help="character-level sacrebleu scoring")
    wer_tokenizer: Literal["none", "13a", "intl", "zh", "ja-mecab"] = field(
        "none", help="sacreBLEU tokenizer to use for evaluation (--scoring wer)"
    )
    wer_remove_punct: bool = field(False, help="remove punctuation (--scoring wer)")
    wer_char_level: bool = field(False, help="evaluate at character level (--scoring wer)")
    wer_lowercase: bool = field(False, help="lowercasing (--scoring wer)")


@dataclass(kw_only=True)
class InteractiveConfig:
    """Options of ``seqloom interactive`` (fairseq's ``interactive`` group)."""

    buffer_size: int = field(0, help="read this many sentences into a buffer before processing them (0 means 1)")
    input: str = field("-", help="file to read from; - for stdin")


@dataclass(kw_only=True)
class QuantizeConfig:
    """seqloom's own option of ``seqloom generate`` and ``seqloom interactive`` (fairseq has none like it)."""

    quantize: Optional[Literal["int8"]] = field(
        None,
        help="run the models' linear layers and output projection with int8 weights (one scale per output row, "
        "inputs quantized per row; CPU only, needs --cpu where CUDA is present): faster on CPUs with int8 "
        "instructions, and close to float32 output",
    )


@dataclass(kw_only=True)
class DecodeThreadsConfig:
    """seqloom's own option of ``seqloom generate`` (fairseq has none like it)."""

    decode_threads: int = field(
        1,
        help="on the CPU, translate this many batches at once, each in its own worker process (forked, sharing the "
        "models' memory; a thread where fork is missing) with an equal share of the intra-op threads (faster for "
        "small models, whose decoding steps are mostly per-op overhead; holds that many batches in memory); 1: "
        "one batch at a time on all threads",
    )
