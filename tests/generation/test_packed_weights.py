"""Packed float32 products (``--packed-weights``): the layers, and ``seqloom generate`` against fairseq's output.

The packed product sums in MKL's packed order, so it equals ``F.linear`` to float32 rounding, not bit for bit;
everything else about the layers (keys, training, other dtypes) stays what ``nn.Linear`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fixture_compare import compare_lines, read_lines
from torch import nn

from seqloom.cli.generate import main as generate
from seqloom.hub import TransformerModel
from seqloom.modules import packed_linear
from seqloom.modules.packed_linear import PackedLinear, PackedVocabProjection, pack_linears, packed_unavailable
from seqloom.modules.vocab_projection import VocabProjection


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 16, bias=False), VocabProjection(16, 37))


def test_packed_products_run_on_this_build() -> None:
    assert packed_unavailable(torch.device("cpu")) is None  # the pinned CPU build of torch ships MKL
    assert "add --cpu" in (packed_unavailable(torch.device("meta")) or "")


def test_packed_layers_keep_keys_and_give_the_float_product_to_rounding() -> None:
    model = small_model().eval()
    x = torch.randn(7, 3, 16)
    with torch.no_grad():
        expected = model(x)
    keys = list(model.state_dict())
    assert pack_linears(model) == 3
    assert [type(m) for m in model] == [PackedLinear, nn.ReLU, PackedLinear, PackedVocabProjection]
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        got = model(x)
        memo: dict[str, torch.Tensor] = {}
        step = model[3].decoding(model[:3](x[:, 0]), memo)
    assert got.shape == expected.shape == (7, 3, 37)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step, expected[:, 0], rtol=1e-5, atol=1e-5)
    assert memo == {}  # whole rows from the packed weight, not the padded route


def test_packed_layers_follow_weights_written_in_place_and_train_as_before() -> None:
    model = small_model()
    pack_linears(model)
    fresh = small_model()
    with torch.no_grad():
        fresh[0].weight.mul_(-2.0)
    model.load_state_dict(fresh.state_dict())
    x = torch.randn(5, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fresh(x), rtol=1e-5, atol=1e-5)  # packed again after the load
    model.train()
    loss = model(x).logsumexp(-1).sum()  # gradients on: the plain product, exactly
    loss.backward()
    assert torch.equal(model(x), fresh(x))
    assert model[0].weight.grad is not None


def test_only_float32_cpu_layers_without_hooks_are_switched() -> None:
    model = small_model()
    model[0].to(torch.bfloat16)
    model[2].register_forward_hook(lambda *args: None)
    assert pack_linears(model) == 1
    assert type(model[0]) is nn.Linear and type(model[2]) is nn.Linear
    x = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(packed_linear.packed_product(x.bfloat16(), model[0].weight, model[0].bias),
                           F.linear(x.bfloat16(), model[0].weight, model[0].bias))  # fmt: skip


def hypothesis_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[1:2] == "-"]


def test_generate_with_packed_weights_matches_fairseq(
    fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fairseq's beam-5 lines of one shard: tokens exactly, scores within 1e-4, through the packed products."""
    mt = fairseq_fixtures / "mt"
    packed = []
    original = packed_linear.packed_weight
    monkeypatch.setattr(packed_linear, "packed_weight", lambda w: packed.append(w) or original(w))
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "test",
            "--no-progress-bar", "--cpu", "--batch-size", "32", "--beam", "5", "--num-shards", "8", "--shard-id", "1",
            "--packed-weights"]  # fmt: skip
    assert generate(argv) == 0
    got = hypothesis_lines(capsys.readouterr().out)
    ids = {line.split("\t")[0][2:] for line in got if line.startswith("S-")}
    assert len(ids) >= 8 and len(packed) > 100  # the decoders' products went through packed weights
    expected = [line for line in read_lines(mt / "outputs" / "generate.beam5.txt.gz")
                if line[1:2] == "-" and line.split("\t")[0][2:] in ids]  # fmt: skip
    assert compare_lines(expected, got) == []


def test_packed_weights_refusals_name_the_flags(fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mt = fairseq_fixtures / "mt"
    base = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "test",
            "--cpu", "--no-progress-bar", "--packed-weights"]  # fmt: skip
    assert generate([*base, "--quantize", "int8"]) == 1
    assert "--packed-weights packs float32 weights; --quantize int8 has none left" in capsys.readouterr().err
    assert generate([*base, "--bf16"]) == 1
    assert "--packed-weights packs float32 weights; drop --fp16/--bf16" in capsys.readouterr().err


def test_hub_with_packed_weights_translates_as_fairseqs_hub(fairseq_fixtures: Path) -> None:
    """fairseq's hub.json translations (beam 5) from ``from_pretrained(..., packed_weights=True)``; int8 together with
    it is refused."""
    mt = fairseq_fixtures / "mt"
    reference = json.loads((mt / "hub.json").read_text(encoding="utf-8"))
    kwargs = dict(checkpoint_file="checkpoint_best.pt", data_name_or_path=str(mt / "data-bin"), tokenizer="moses",
                  bpe="subword_nmt", bpe_codes=str(mt / "text" / "bpe.codes"))  # fmt: skip
    hub = TransformerModel.from_pretrained(str(mt / "checkpoints"), packed_weights=True, **kwargs)
    assert isinstance(hub.model.decoder.layers[0].fc1, PackedLinear)
    assert type(hub.model.encoder.layers[0].fc1) is nn.Linear  # the encoder keeps its own fast path
    assert hub.translate(reference["inputs"], beam=5) == reference["translate_beam5"]
    with pytest.raises(ValueError, match="packed_weights=True packs float32 weights; quantize='int8'"):
        TransformerModel.from_pretrained(str(mt / "checkpoints"), packed_weights=True, quantize="int8", **kwargs)
