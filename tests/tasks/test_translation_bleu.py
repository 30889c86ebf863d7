"""--eval-bleu: BLEU from counts summed over batches equals sacrebleu on the whole corpus."""

from __future__ import annotations

import sacrebleu

from seqloom.tasks.translation_bleu import ORDER, bleu_from_sums


def test_bleu_from_summed_batch_counts_equals_corpus_bleu() -> None:
    hyps = ["the cat sat on the mat", "a dog barks", "hello there my friend", "it is raining today", "yes"]
    refs = ["the cat sat on a mat", "the dog barks", "hello my friend", "it rains today", "yes indeed"]
    sums: dict[str, float] = {}
    for lo, hi in ((0, 2), (2, 5)):  # two validation batches
        b = sacrebleu.corpus_bleu(hyps[lo:hi], [refs[lo:hi]], tokenize="13a")
        part = {"_bleu_sys_len": b.sys_len, "_bleu_ref_len": b.ref_len}
        part.update({f"_bleu_counts_{i}": b.counts[i] for i in range(ORDER)})
        part.update({f"_bleu_totals_{i}": b.totals[i] for i in range(ORDER)})
        for k, v in part.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    whole = sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a", smooth_method="exp").score
    assert bleu_from_sums(sums) == {"bleu": round(whole, 2)}
    assert bleu_from_sums({}) == {}
