"""``--eval-bleu``: BLEU of generated translations during validation (fairseq's translation task).

Each validation batch is translated with ``--eval-bleu-args`` (a JSON dict of generation options, e.g.
``'{"beam": 4, "lenpen": 0.6}'``), hypotheses and references are turned back into text (BPE removed
with ``--eval-bleu-remove-bpe``, detokenized with ``--eval-bleu-detok``) and sacrebleu's n-gram counts
are logged as sums (``_bleu_counts_i``, ``_bleu_totals_i``, ``_bleu_sys_len``, ``_bleu_ref_len``), so the
subset's BLEU is computed once from the totals, over all batches and ranks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import torch

from seqloom.data.dictionary import Dictionary

logger = logging.getLogger(__name__)

ORDER = 4


def _json_arg(text: str | None, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag}: not a JSON object ({err}); e.g. '{{\"beam\": 4}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: expected a JSON object such as '{{\"beam\": 4}}', got {text!r}")
    return value


class BleuValidator:
    """Translates a validation batch and returns sacrebleu's counts as logging-output sums."""

    def __init__(self, cfg: Any, tgt_dict: Dictionary, *, eos: int | None = None) -> None:
        """``eos``: the task's end-of-target symbol when not ``</s>`` (left out of the texts too)."""
        from seqloom.generation.config import GenerationConfig

        self.cfg, self.tgt_dict, self.eos = cfg, tgt_dict, eos
        self.strip = {eos} if eos is not None else set()
        gen_args = _json_arg(cfg.eval_bleu_args, "--eval-bleu-args")
        try:
            self.gen_cfg = GenerationConfig(**gen_args)
        except TypeError as err:
            raise ValueError(f"--eval-bleu-args: {err}") from None
        self.detok = None
        if cfg.eval_bleu_detok and cfg.eval_bleu_detok != "space":
            from seqloom.tokenizers.tokenizer import build_tokenizer

            detok_args = _json_arg(cfg.eval_bleu_detok_args, "--eval-bleu-detok-args")
            self.detok = build_tokenizer(cfg.eval_bleu_detok, detok_args or None)

    def decode(self, tokens: torch.Tensor, *, escape_unk: bool) -> str:
        unk = "UNKNOWNTOKENINREF" if escape_unk else "UNKNOWNTOKENINHYP"
        text = self.tgt_dict.string(tokens.int().cpu(), self.cfg.eval_bleu_remove_bpe, unk_string=unk,
                                    extra_symbols_to_ignore=self.strip)  # fmt: skip
        return self.detok.decode(text) if self.detok is not None else text

    def __call__(self, model: torch.nn.Module, sample: dict[str, Any]) -> dict[str, float]:
        import sacrebleu

        from seqloom.generation.decoding_model import as_decoding_models
        from seqloom.generation.generator import SequenceGenerator

        generator = SequenceGenerator(as_decoding_models([model]), self.tgt_dict, self.gen_cfg, eos=self.eos)
        hyps_out = generator.generate(sample["net_input"]["src_tokens"])
        pad = self.tgt_dict.pad()
        hyps = [self.decode(h[0].tokens, escape_unk=False) for h in hyps_out]
        refs = [self.decode(t[t.ne(pad)], escape_unk=True) for t in sample["target"]]
        if self.cfg.eval_bleu_print_samples and hyps:
            logger.info("example hypothesis: %s", hyps[0])
            logger.info("example reference: %s", refs[0])
        tokenize = "none" if self.cfg.eval_tokenized_bleu else "13a"
        bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize)
        out = {"_bleu_sys_len": float(bleu.sys_len), "_bleu_ref_len": float(bleu.ref_len)}
        for i in range(ORDER):
            out[f"_bleu_counts_{i}"] = float(bleu.counts[i])
            out[f"_bleu_totals_{i}"] = float(bleu.totals[i])
        return out


def bleu_from_sums(sums: Mapping[str, float]) -> dict[str, float]:
    """``{"bleu": score}`` from summed counts (exp smoothing, as fairseq); empty without counts."""
    if "_bleu_sys_len" not in sums:
        return {}
    from sacrebleu.metrics import BLEU

    counts = [int(sums.get(f"_bleu_counts_{i}", 0)) for i in range(ORDER)]
    totals = [int(sums.get(f"_bleu_totals_{i}", 0)) for i in range(ORDER)]
    if max(totals) == 0:
        return {"bleu": 0.0}
    score = BLEU.compute_bleu(
        correct=counts,
        total=totals,
        sys_len=int(sums["_bleu_sys_len"]),
        ref_len=int(sums["_bleu_ref_len"]),
        smooth_method="exp",
    ).score
    return {"bleu": round(score, 2)}
