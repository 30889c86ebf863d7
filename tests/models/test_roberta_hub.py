"""The RoBERTa / XLM-R hub against fairseq's: encode, decode, extract_features, fill_mask, predict, on the tiny models
of tests/fixtures/roberta (trained by fairseq: scripts/make_roberta_fixtures.sh), and fairseq's README snippets
run as they are written (``fairseq`` replaced by ``seqloom``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
INPUTS = REFERENCE["inputs"]  # what make_hub_reference.py gave fairseq's hub
SENTENCES: list[str] = INPUTS["sentences"]
PAIRS: list[tuple[str, str]] = [tuple(p) for p in INPUTS["pairs"]]
MASKED: list[str] = INPUTS["masked"]


def gpt2_files(fairseq_fixtures: Path) -> dict[str, str]:
    gpt2 = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2-bpe"
    return {"gpt2_encoder_json": str(gpt2 / "encoder.json"), "gpt2_vocab_bpe": str(gpt2 / "vocab.bpe")}


@pytest.fixture(scope="module")
def roberta(fairseq_fixtures: Path) -> Any:
    from seqloom.hub import RobertaModel

    return RobertaModel.from_pretrained(str(FIXTURES / "gpt2"), "model.pt", ".", bpe="gpt2",
                                        **gpt2_files(fairseq_fixtures))  # fmt: skip


@pytest.fixture(scope="module")
def tuned(fairseq_fixtures: Path) -> Any:
    from seqloom.hub import RobertaModel

    return RobertaModel.from_pretrained(str(FIXTURES / "gpt2"), "finetuned.pt", "./glue", bpe="gpt2",
                                        **gpt2_files(fairseq_fixtures))  # fmt: skip


@pytest.fixture(scope="module")
def xlmr() -> Any:
    from seqloom.hub import XLMRModel

    return XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".")


def close(actual: torch.Tensor, expected: list[Any], tol: float = 1e-4) -> None:
    torch.testing.assert_close(actual.detach().double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=0)


def test_encode_decode_equal_fairseqs(roberta: Any) -> None:
    ref = REFERENCE["gpt2"]
    assert [roberta.encode(s).tolist() for s in SENTENCES] == ref["encode"]
    assert [roberta.encode(a, b).tolist() for a, b in PAIRS] == ref["encode_pairs"]
    assert roberta.encode(*PAIRS[0], no_separator=True).tolist() == ref["encode_no_separator"]
    tokens = ref["encode"] + ref["encode_pairs"]
    assert [roberta.decode(torch.tensor(t)) for t in tokens] == ref["decode"]
    assert roberta.encode(SENTENCES[0]).dtype == torch.int64


def test_features_equal_fairseqs(roberta: Any) -> None:
    for sentence, expected in zip(SENTENCES, REFERENCE["gpt2"]["features"]):
        features = roberta.extract_features(roberta.encode(sentence))
        assert features.dim() == 3 and features.size(0) == 1
        close(features[0].detach(), expected)
    hiddens = roberta.extract_features(roberta.encode(SENTENCES[0]), return_all_hiddens=True)
    assert isinstance(hiddens, list) and len(hiddens) == len(REFERENCE["gpt2"]["all_hiddens"]) == 3
    for state, expected in zip(hiddens, REFERENCE["gpt2"]["all_hiddens"]):
        close(state[0].detach(), expected)


def test_batched_features_equal_one_by_one(roberta: Any) -> None:
    from seqloom.data.language_pair_dataset import collate_tokens

    tokens = [roberta.encode(s) for s in SENTENCES]
    batch = collate_tokens(tokens, pad_idx=1)
    features = roberta.extract_features(batch)
    for i, t in enumerate(tokens):
        close(features[i, : len(t)], REFERENCE["gpt2"]["features"][i])


def test_fill_mask_equals_fairseqs(roberta: Any) -> None:
    for masked, expected in zip(MASKED, REFERENCE["gpt2"]["fill_mask"]):
        got = roberta.fill_mask(masked, topk=3)
        assert [(text, token) for text, _, token in got] == [(text, token) for text, _, token in expected]
        assert all(isinstance(x, tuple) and isinstance(x[1], float) for x in got)
        close(torch.tensor([score for _, score, _ in got]), [score for _, score, _ in expected])
    batched = roberta.fill_mask(MASKED, topk=3)
    assert [[t for t, _, _ in rows] for rows in batched] == [
        [t for t, _, _ in e] for e in REFERENCE["gpt2"]["fill_mask"]
    ]


def test_predict_of_the_fine_tuned_head_equals_fairseqs(tuned: Any) -> None:
    ref = REFERENCE["finetuned"]
    assert sorted(tuned.model.classification_heads) == ref["heads"]
    label_fn = lambda label: tuned.task.label_dictionary.string([label + tuned.task.label_dictionary.nspecial])  # noqa: E731
    assert [label_fn(k) for k in range(2)] == ref["labels"]
    tokens = [tuned.encode(a, b) for a, b in PAIRS] + [tuned.encode(s) for s in SENTENCES]
    for t, logprobs, logits in zip(tokens, ref["predict"], ref["logits"]):
        close(tuned.predict("toy_head", t)[0], logprobs)
        close(tuned.predict("toy_head", t, return_logits=True)[0], logits)


def test_xlmr_layout_equals_fairseqs(xlmr: Any) -> None:
    ref = REFERENCE["xlmr"]
    assert [xlmr.encode(s).tolist() for s in SENTENCES] == ref["encode"]
    assert [xlmr.encode(a, b).tolist() for a, b in PAIRS] == ref["encode_pairs"]
    for sentence, expected in zip(SENTENCES, ref["features"]):
        close(xlmr.extract_features(xlmr.encode(sentence))[0], expected)
    for masked, expected in zip(MASKED, ref["fill_mask"]):
        got = xlmr.fill_mask(masked, topk=3)
        assert [(text, token) for text, _, token in got] == [(text, token) for text, _, token in expected]
        close(torch.tensor([s for _, s, _ in got]), [s for _, s, _ in expected])


def test_readme_snippets_run(roberta: Any) -> None:
    """fairseq's RoBERTa README (examples/roberta/README.md), its hub lines with ``fairseq`` -> ``seqloom``."""
    from seqloom.data.data_utils import collate_tokens

    roberta.eval()  # disable dropout (or leave in train mode to finetune)
    tokens = roberta.encode(SENTENCES[0])  # (the README's "Hello world!" is <unk> in this 1,000-symbol dictionary)
    assert tokens.tolist()[0] == 0 and tokens.tolist()[-1] == 2
    assert roberta.decode(tokens) == SENTENCES[0]
    last_layer_features = roberta.extract_features(tokens)
    assert last_layer_features.size() == torch.Size([1, len(tokens), 32])
    all_layers = roberta.extract_features(tokens, return_all_hiddens=True)
    assert len(all_layers) == 3
    assert torch.all(all_layers[-1] == last_layer_features)
    roberta.register_classification_head("new_task", num_classes=3)
    logprobs = roberta.predict("new_task", tokens)
    assert logprobs.shape == (1, 3)
    batch_of_pairs = [["Roberta is a heavily optimized version of BERT.", "Roberta is not very optimized."],
                      ["Roberta is a heavily optimized version of BERT.", "Roberta is based on BERT."]]  # fmt: skip
    batch = collate_tokens([roberta.encode(pair[0], pair[1]) for pair in batch_of_pairs], pad_idx=1)
    logprobs = roberta.predict("new_task", batch)
    assert logprobs.shape == (2, 3) and logprobs.argmax(dim=1).shape == (2,)
    # "or leave in train mode to finetune": the features carry gradients, as fairseq's
    loss = roberta.predict("new_task", tokens).sum()
    loss.backward()
    head = roberta.model.classification_heads["new_task"]
    assert head.dense.weight.grad is not None and roberta.model.encoder.lm_head.dense.weight.grad is None
    roberta.model.zero_grad(set_to_none=True)
    filled = roberta.fill_mask("The first Star wars movie came out in <mask>", topk=3)
    assert len(filled) == 3 and all(len(x) == 3 for x in filled)
    assert filled[0][1] >= filled[1][1] >= filled[2][1]


def test_errors_are_named(roberta: Any) -> None:
    with pytest.raises(ValueError, match="exactly one <mask>"):
        roberta.fill_mask("no mask here")
    with pytest.raises(KeyError, match="register_classification_head"):
        roberta.predict("missing_head", roberta.encode("Hi"))
    with pytest.raises(ValueError, match="tokens exceeds maximum length"):
        roberta.extract_features(torch.full((1, 200), 5, dtype=torch.long))


def test_export_with_heads_loads_with_the_same_outputs(tuned: Any, fairseq_fixtures: Path, tmp_path: Path) -> None:
    from seqloom.cli import export
    from seqloom.hub import RobertaModel

    files = gpt2_files(fairseq_fixtures)
    out = tmp_path / "exported"
    argv = ["--path", str(FIXTURES / "gpt2" / "finetuned.pt"), "--data", str(FIXTURES / "gpt2" / "glue"),
            "--out", str(out), "--bpe", "gpt2", "--gpt2-encoder-json", files["gpt2_encoder_json"],
            "--gpt2-vocab-bpe", files["gpt2_vocab_bpe"]]  # fmt: skip
    assert export.main(argv) == 0
    assert {"model.safetensors", "config.json", "dict.txt", "label.dict.txt", "encoder.json", "vocab.bpe"} <= {
        p.name for p in out.iterdir()
    }
    loaded = RobertaModel.from_pretrained(str(out))
    assert sorted(loaded.model.classification_heads) == ["toy_head"]
    tokens = tuned.encode(*PAIRS[0])
    assert loaded.encode(*PAIRS[0]).tolist() == tokens.tolist()
    torch.testing.assert_close(loaded.predict("toy_head", tokens), tuned.predict("toy_head", tokens))
    torch.testing.assert_close(loaded.extract_features(tokens), tuned.extract_features(tokens))
    assert loaded.fill_mask(MASKED[0], topk=2) == tuned.fill_mask(MASKED[0], topk=2)
    assert loaded.task.label_dictionary is not None and loaded.task.label_dictionary.symbols == (
        tuned.task.label_dictionary.symbols
    )


def test_batched_fill_mask_equals_one_by_one_in_order(roberta: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from seqloom.hub import roberta as hub_roberta

    inputs = MASKED + ["Let there be <mask>", "<mask> God created the heavens and the earth, and the light."] * 3
    one_by_one = [roberta.fill_mask(text, topk=4) for text in inputs]
    for rows in (32, 2):  # one batch, then several batches of similar lengths
        monkeypatch.setattr(hub_roberta, "BATCH_ROWS", rows)
        batched = roberta.fill_mask(inputs, topk=4)
        assert len(batched) == len(inputs)
        for got, want in zip(batched, one_by_one):
            assert [(t, tok) for t, _, tok in got] == [(t, tok) for t, _, tok in want]
            close(torch.tensor([s for _, s, _ in got]), [s for _, s, _ in want], tol=1e-5)


def test_length_batches_keep_every_index_once_within_the_limits() -> None:
    from seqloom.hub.roberta import length_batches

    lengths = [5, 40, 7, 7, 39, 3, 12, 41, 2]
    batches = length_batches(lengths, max_rows=3, max_tokens=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100)
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    assert length_batches([600], max_rows=3, max_tokens=100) == [[0]]  # a row longer than the budget gets its own batch


def test_masked_rows_projection_equals_the_full_projection(roberta: Any) -> None:
    """fill_mask projects only the masked rows through the LM head; fairseq projects every position and picks the
    masked one: the same scores."""
    from seqloom.data.data_utils import collate_tokens

    rows = [roberta._masked_tokens(text) for text in MASKED]
    tokens = collate_tokens(rows, pad_idx=1)
    at = tokens.eq(roberta.task.mask_idx)
    with torch.no_grad():
        picked = roberta.model(tokens, masked_tokens=at).logits  # (B, V)
        full = roberta.model(tokens).logits  # (B, T, V)
    torch.testing.assert_close(picked, full[at], atol=1e-6, rtol=1e-6)


def test_fill_mask_leaves_no_graph_and_features_keep_theirs(roberta: Any) -> None:
    roberta.eval()
    tokens = roberta.encode(SENTENCES[0])
    assert roberta.extract_features(tokens).requires_grad  # fine-tunable, as fairseq's
    with torch.no_grad():
        assert not roberta.extract_features(tokens).requires_grad
    roberta.fill_mask(MASKED[0], topk=2)
    assert all(p.grad is None for p in roberta.model.parameters())
