"""Options of ``seqloom generate`` / ``interactive``: fairseq's generation, eval and interactive groups."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import Bounds, field

FINITE = Bounds()
POSITIVE = Bounds(low=0, low_open=True)
AT_LEAST_0 = Bounds(low=0)
AT_LEAST_1 = Bounds(low=1)

AlignmentKind = Literal["hard", "soft"]


@dataclass(kw_only=True)
class GenerationConfig:
    """Search and length options of the sequence generator (fairseq's ``generation`` group)."""

    beam: int = field(5, help="number of hypotheses kept per sentence at each decoding step", bounds=AT_LEAST_1)
    nbest: int = field(
        1, help="number of finished hypotheses printed per sentence, best first (at most --beam)", bounds=AT_LEAST_1
    )
    max_len_a: float = field(
        0.0, help="output length limit, in tokens, is a * source length + b: this is a", bounds=AT_LEAST_0
    )
    max_len_b: int = field(
        200, help="output length limit, in tokens, is a * source length + b: this is b", bounds=AT_LEAST_0
    )
    min_len: int = field(
        1,
        help="shortest output, in tokens before the end-of-sentence symbol; eos is blocked until then",
        bounds=AT_LEAST_0,
    )
    match_source_len: bool = field(False, help="make every output exactly as long as its source, in tokens")
    unnormalized: bool = field(
        False, help="rank hypotheses by their summed log-probability, not divided by their length"
    )
    no_early_stop: bool = field(False, help="deprecated and ignored, as in fairseq")
    no_beamable_mm: bool = field(False, help="accepted for compatibility; seqloom has no beamable matmul")
    lenpen: float = field(
        1.0,
        help="length penalty: scores are divided by length to this power, so below 1 prefers shorter outputs and above 1 longer ones",
        bounds=FINITE,
    )
    unkpen: float = field(
        0.0,
        help="subtracted from the unknown symbol's log-probability at every step: above 0 makes <unk> rarer, below 0 more common",
        bounds=FINITE,
    )
    replace_unk: Optional[str] = field(
        None,
        help="replace each <unk> in the output by the source word it attends to most; a file of 'source target' pairs, if given, translates that word",
        const="@@ ",
    )
    sacrebleu: bool = field(False, help="score with sacrebleu (deprecated: use --scoring sacrebleu)")
    score_reference: bool = field(
        False, help="score the reference target under the model instead of searching for a hypothesis"
    )
    prefix_size: int = field(
        0, help="force the first N tokens of each reference target as the output's start", bounds=AT_LEAST_0
    )
    constraints: Optional[Literal["ordered", "unordered"]] = field(
        None,
        help="make every output contain given words: 'ordered' in the given order, 'unordered' in any (interactive: constraints follow the source, tab-separated)",
        const="ordered",
    )
    no_repeat_ngram_size: int = field(
        0,
        help="forbid any n-gram of this many tokens from appearing twice in an output (0: allow repeats)",
        bounds=AT_LEAST_0,
    )
    no_repeat_ngram_mode: Literal["fairseq", "strict"] = field(
        "strict",
        help="strict: ban tokens that would repeat an n-gram, as the option promises; fairseq: reproduce fairseq 0.12's CPU check, which blocks nothing (its outputs, repeats included)",
    )
    sampling: bool = field(
        False, help="draw each next token at random from the model's distribution instead of keeping the best ones"
    )
    sampling_topk: int = field(
        -1,
        help="with --sampling, draw only among the K most likely next tokens (-1: all tokens)",
        bounds=Bounds(low=1, off=-1),
    )
    sampling_topp: float = field(
        -1.0,
        help="with --sampling, draw only among the most likely next tokens whose probabilities add up to P (-1: all tokens)",
        bounds=Bounds(low=0, high=1, low_open=True, off=-1),
    )
    temperature: float = field(
        1.0,
        help="divide the model's scores by this before the softmax: above 1 flattens the distribution, below 1 sharpens it",
        bounds=POSITIVE,
    )
    diverse_beam_groups: int = field(
        -1,
        help="split the beam into this many groups that are pushed apart (diverse beam search; -1: off)",
        bounds=Bounds(low=1, off=-1),
    )
    diverse_beam_strength: float = field(
        0.5,
        help="how much a token already chosen by an earlier group lowers its score in the next groups (diverse beam search)",
        bounds=FINITE,
    )
    diversity_rate: float = field(
        -1.0,
        help="penalty on each hypothesis' k-th best continuation, times k (diverse siblings search; -1: off; 0 equals beam search)",
        bounds=FINITE,
    )
    print_alignment: Optional[AlignmentKind] = field(
        None,
        help="print an A- line of alignments read from the attention (hard: source-target word pairs; soft: the weights)",
        const="hard",
    )
    retain_dropout: bool = field(False, help="keep dropout active while decoding")
    retain_dropout_modules: Optional[str] = field(
        None,
        help="keep dropout only in these modules, comma-separated fairseq class names such as TransformerEncoderLayerBase,MultiheadAttention (unset: in all of them)",
    )
    lm_path: Optional[str] = field(
        None,
        help="language model checkpoint (over the target dictionary) whose log-probs are added while decoding (shallow fusion)",
    )
    lm_weight: float = field(
        0.0, help="factor on the language model's log-probs in shallow fusion (--lm-path)", bounds=FINITE
    )


@dataclass(kw_only=True)
class CommonEvalConfig:
    """Which checkpoints to load and how to print (fairseq's ``common_eval`` group)."""

    path: Optional[str] = field(None, help="model checkpoint file; several separated by ':' are decoded as an ensemble")
    post_process: Optional[str] = field(
        None,
        help="undo the subword segmentation before printing and scoring ('subword_nmt', 'sentencepiece', 'letter', or a continuation marker to remove)",
        aliases=("--remove-bpe",),
        const="subword_nmt",
    )
    quiet: bool = field(False, help="print only the closing score line, no per-sentence lines")
    model_overrides: str = field(
        "{}", help="model settings to change after loading, as a Python dict literal such as \"{'dropout': 0.2}\""
    )
    results_path: Optional[str] = field(
        None, help="write the output lines to RESULTS_PATH/generate-<subset>.txt instead of standard output"
    )
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
    sacrebleu_tokenizer: str = field(
        "13a", help="tokenizer sacrebleu applies before counting n-grams (--scoring sacrebleu)"
    )
    sacrebleu_lowercase: bool = field(False, help="lowercase hypotheses and references before sacrebleu counts them")
    sacrebleu_char_level: bool = field(False, help="count characters instead of words in sacrebleu")
    wer_tokenizer: Literal["none", "13a", "intl", "zh", "ja-mecab"] = field(
        "none", help="sacrebleu tokenizer applied before counting word errors (--scoring wer)"
    )
    wer_remove_punct: bool = field(False, help="drop punctuation before counting word errors (--scoring wer)")
    wer_char_level: bool = field(False, help="count character errors instead of word errors (--scoring wer)")
    wer_lowercase: bool = field(False, help="lowercase before counting word errors (--scoring wer)")


@dataclass(kw_only=True)
class InteractiveConfig:
    """Options of ``seqloom interactive`` (fairseq's ``interactive`` group)."""

    buffer_size: int = field(
        0, help="sentences read from the input before they are translated together (0: one at a time)"
    )
    input: str = field("-", help="file to read from; - for stdin")


@dataclass(kw_only=True)
class QuantizeConfig:
    """seqloom's own options of ``seqloom generate`` and ``seqloom interactive`` (fairseq has none like them)."""

    quantize: Optional[Literal["int8"]] = field(
        None,
        help="run the models' linear layers and output projection with int8 weights (one scale per output row, "
        "inputs quantized per row; CPU only, needs --cpu where CUDA is present): faster on CPUs with int8 "
        "instructions, and close to float32 output",
    )
    packed_weights: bool = field(
        False,
        help="float32 on the CPU: multiply by the decoders' weights packed once for MKL instead of repacking them "
        "in every product (faster decoding, most on one thread; the packed copies add memory, about 300 MiB for "
        "transformer big, and scores differ from fairseq's in their last digits)",
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
