"""int8 RoBERTa / XLM-R hubs (``quantize="int8"``) on the fairseq-trained tiny models of tests/fixtures/roberta:
outputs close to fairseq's float32 ones, the layers really int8, ``seqloom export --quantize int8`` and back, and
the refusals.

Tolerances: weights and inputs are rounded per row to 127 steps of the row's largest magnitude, so each product
is off by a fraction of a percent of its row's scale, and much of it cancels over the sums. Measured against
fairseq's float32 outputs: features at most 0.0026 off (they reach 2.9 in size), fill_mask probabilities at most
1.4e-4, the fine-tuned head's log-probabilities 0.0027 and logits 0.004. The bounds are about ten times those:
0.02 for features, log-probabilities and logits, 1e-3 for probabilities. The float32 hub matches to 1e-4
(tests/models/test_roberta_hub.py). Fillings: the three best tokens are the same as fairseq's for every input
here (the models' top probabilities differ by ~1e-3, ten times the int8 change), so they are asserted equal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import nn

from seqloom.cli.main import main as seqloom_main
from seqloom.hub import RobertaModel, XLMRModel
from seqloom.modules.int8 import Int8Linear
from seqloom.paths import plain_file_mode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
GPT2 = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2-bpe"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
INPUTS = REFERENCE["inputs"]  # what make_hub_reference.py gave fairseq's hub
SENTENCES: list[str] = INPUTS["sentences"]
PAIRS: list[tuple[str, str]] = [tuple(p) for p in INPUTS["pairs"]]
MASKED: list[str] = INPUTS["masked"]
BPE = {"bpe": "gpt2", "gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")}


def close(actual: torch.Tensor, expected: list[Any], tol: float) -> None:
    torch.testing.assert_close(actual.detach().double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=0)


@pytest.fixture(scope="module")
def roberta8() -> Any:
    return RobertaModel.from_pretrained(str(FIXTURES / "gpt2"), "model.pt", ".", quantize="int8", **BPE)


@pytest.fixture(scope="module")
def tuned8() -> Any:
    return RobertaModel.from_pretrained(str(FIXTURES / "gpt2"), "finetuned.pt", "./glue", quantize="int8", **BPE)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("roberta-int8") / "exported"
    argv = ["export", "--path", str(FIXTURES / "gpt2" / "finetuned.pt"), "--data", str(FIXTURES / "gpt2" / "glue"),
            "--out", str(out), "--bpe", "gpt2", "--gpt2-encoder-json", BPE["gpt2_encoder_json"],
            "--gpt2-vocab-bpe", BPE["gpt2_vocab_bpe"], "--quantize", "int8"]  # fmt: skip
    assert seqloom_main(argv) == 0
    return out


def test_every_linear_layer_is_int8_and_the_embedding_stays_float32(tuned8: Any) -> None:
    model = tuned8.model
    assert not [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]  # no float layer left
    encoder = model.encoder.sentence_encoder
    layer = encoder.layers[0]
    head_layers = [model.classification_heads["toy_head"].dense, model.classification_heads["toy_head"].out_proj]
    for part in (layer.fc1, layer.fc2, layer.self_attn.q_proj, layer.self_attn.out_proj, model.encoder.lm_head.dense,
                 *head_layers):  # fmt: skip
        assert isinstance(part, Int8Linear)
    head = model.encoder.lm_head
    assert head.weight.dtype == torch.int8 and head.weight.shape == encoder.embed_tokens.weight.shape
    assert head.weight_scale.dtype == torch.float32 and head.weight_scale.shape == (head.weight.size(0),)
    assert encoder.embed_tokens.weight.dtype == torch.float32  # the tied embedding keeps its float32 table
    float_hub = RobertaModel.from_pretrained(str(FIXTURES / "gpt2"), "finetuned.pt", "./glue", **BPE)
    assert torch.equal(encoder.embed_tokens.weight, float_hub.model.encoder.sentence_encoder.embed_tokens.weight)
    sd = model.state_dict()
    for key in ("encoder.lm_head.weight", "encoder.lm_head.dense.weight", "classification_heads.toy_head.dense.weight",
                "encoder.sentence_encoder.layers.1.self_attn.k_proj.weight"):  # fmt: skip
        assert sd[key].dtype == torch.int8 and sd[key.replace(".weight", ".weight_scale")].dtype == torch.float32
    assert sd["encoder.sentence_encoder.embed_tokens.weight"].dtype == torch.float32
    assert tuned8.quantized and not float_hub.quantized


def test_features_and_fill_mask_are_close_to_fairseqs(roberta8: Any) -> None:
    ref = REFERENCE["gpt2"]
    gaps = []
    for sentence, expected in zip(SENTENCES, ref["features"]):
        features = roberta8.extract_features(roberta8.encode(sentence))
        assert features.shape[0] == 1 and not features.requires_grad  # int8 layers run inference only
        close(features[0], expected, tol=0.02)
        gaps.append((features[0] - torch.tensor(expected)).abs().max().item())
    assert max(gaps) > 1e-5  # the int8 layers really ran (float32 is within 1e-6 of fairseq)
    hiddens = roberta8.extract_features(roberta8.encode(SENTENCES[0]), return_all_hiddens=True)
    assert len(hiddens) == len(ref["all_hiddens"])
    for state, expected in zip(hiddens, ref["all_hiddens"]):
        close(state[0], expected, tol=0.02)
    for masked, expected in zip(MASKED, ref["fill_mask"]):
        got = roberta8.fill_mask(masked, topk=3)
        assert [(text, token) for text, _, token in got] == [(text, token) for text, _, token in expected]
        close(torch.tensor([p for _, p, _ in got]), [p for _, p, _ in expected], tol=1e-3)


def test_lists_and_padded_batches_give_the_one_by_one_results(roberta8: Any) -> None:
    """Inputs are quantized row by row, so batching changes only float summation order: the same fillings, and
    features and probabilities within a quantization step."""
    inputs = MASKED + ["Let there be <mask>", "<mask> God created the heavens and the earth, and the light."]
    one_by_one = [roberta8.fill_mask(text, topk=4) for text in inputs]
    batched = roberta8.fill_mask(inputs, topk=4)
    assert [[t for t, _, _ in rows] for rows in batched] == [[t for t, _, _ in rows] for rows in one_by_one]
    for got, want in zip(batched, one_by_one):
        close(torch.tensor([p for _, p, _ in got]), [p for _, p, _ in want], tol=1e-4)
    rows = [roberta8.encode(s) for s in SENTENCES]
    tokens = torch.full((len(rows), max(len(r) for r in rows)), 1, dtype=torch.long)  # (B, T) padded with <pad>
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    features = roberta8.extract_features(tokens)
    for i, r in enumerate(rows):
        alone = roberta8.extract_features(r)[0]
        torch.testing.assert_close(features[i, : len(r)], alone, atol=5e-3, rtol=0)


def test_predict_and_xlmr_are_close_to_fairseqs(tuned8: Any) -> None:
    ref = REFERENCE["finetuned"]
    tokens = [tuned8.encode(a, b) for a, b in PAIRS] + [tuned8.encode(s) for s in SENTENCES]
    for t, logprobs, logits in zip(tokens, ref["predict"], ref["logits"]):
        close(tuned8.predict("toy_head", t)[0], logprobs, tol=0.02)
        close(tuned8.predict("toy_head", t, return_logits=True)[0], logits, tol=0.02)
    xlmr = XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".", quantize="int8")
    assert isinstance(xlmr.model.encoder.sentence_encoder.layers[1].fc2, Int8Linear)
    for sentence, expected in zip(SENTENCES, REFERENCE["xlmr"]["features"]):
        close(xlmr.extract_features(xlmr.encode(sentence))[0], expected, tol=0.02)
    for masked, expected in zip(MASKED, REFERENCE["xlmr"]["fill_mask"]):
        got = xlmr.fill_mask(masked, topk=3)
        assert [token for _, _, token in got] == [token for _, _, token in expected]
        close(torch.tensor([p for _, p, _ in got]), [p for _, p, _ in expected], tol=1e-3)


def test_int8_export_stores_int8_and_loads_back_as_the_same_hub(int8_export: Path, tuned8: Any) -> None:
    config = json.loads((int8_export / "config.json").read_text(encoding="utf-8"))
    assert config["quantize"] == "int8" and config["tied_weights"] == {}  # the LM matrix is its own int8 copy
    assert (int8_export / "model.safetensors").stat().st_mode & 0o777 == plain_file_mode()  # not safetensors' 0600
    with safe_open(str(int8_export / "model.safetensors"), framework="pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["encoder.lm_head.weight"] == "I8" and dtypes["encoder.lm_head.weight_scale"] == "F32"
    assert dtypes["encoder.sentence_encoder.embed_tokens.weight"] == "F32"
    assert dtypes["encoder.sentence_encoder.layers.0.fc1.weight"] == "I8"
    assert dtypes["classification_heads.toy_head.out_proj.weight"] == "I8"
    assert dtypes["classification_heads.toy_head.out_proj.bias"] == "F32"
    loaded = RobertaModel.from_pretrained(str(int8_export))
    assert loaded.quantized and isinstance(loaded.model.classification_heads["toy_head"].dense, Int8Linear)
    expected = tuned8.model.state_dict()
    assert loaded.model.state_dict().keys() == expected.keys()
    for name, tensor in loaded.model.state_dict().items():
        assert tensor.dtype == expected[name].dtype and torch.equal(tensor, expected[name]), name
    tokens = tuned8.encode(*PAIRS[0])
    assert torch.equal(loaded.predict("toy_head", tokens), tuned8.predict("toy_head", tokens))
    assert torch.equal(loaded.extract_features(tokens), tuned8.extract_features(tokens))
    assert loaded.fill_mask(MASKED, topk=3) == tuned8.fill_mask(MASKED, topk=3)
    again = RobertaModel.from_pretrained(str(int8_export), quantize="int8")  # already int8: loaded as it is
    assert torch.equal(again.model.encoder.lm_head.weight, tuned8.model.encoder.lm_head.weight)


def test_refusals_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="quantize='fp8': the known method is 'int8'"):
        XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".", quantize="fp8")
    hub = XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".", quantize="int8")
    tokens = hub.encode(SENTENCES[1])
    hub.half()
    with pytest.raises(ValueError, match="int8 layers take float32 inputs and the hub was converted to torch.float16"):
        hub.fill_mask(MASKED[0])
    hub.bfloat16()
    with pytest.raises(ValueError, match=r"converted to torch.bfloat16; call \.float\(\) on it"):
        hub.extract_features(tokens)
    hub.to("meta")  # a device other than the CPU, without needing one
    with pytest.raises(ValueError, match="int8 layers .*: int8 inference runs on the CPU and the model is on meta"):
        hub.fill_mask(MASKED[0])

    def missing(*args: object) -> torch.Tensor:
        raise RuntimeError("no int8 kernel")

    monkeypatch.setattr(torch, "_int_mm", missing)
    with pytest.raises(ValueError, match="quantize='int8': this PyTorch build .* cannot multiply int8 matrices"):
        XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".", quantize="int8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_int8_hub_moved_to_the_gpu_is_refused() -> None:
    hub = XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".", quantize="int8").cuda()
    with pytest.raises(ValueError, match="int8 inference runs on the CPU and the model is on cuda"):
        hub.fill_mask(MASKED[0])
    with pytest.raises(ValueError, match="int8 inference runs on the CPU"):
        XLMRModel.from_pretrained(str(FIXTURES / "xlmr"), "model.pt", ".", quantize="int8").cuda().extract_features(
            hub.encode(SENTENCES[0])
        )
