"""The GPU paths: cached decoding and SDPA kernels on CUDA, mixed-precision and compiled training, and
``seqloom generate``/``interactive`` placing the models on the GPU as fairseq does.

These need a CUDA device: on a GPU machine run ``pytest tests/cuda``. Without one the module is skipped as a
whole; the CPU versions of the same checks (cached decoding, bf16 autocast, compile, the CLIs) run in the rest
of the suite.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import generate, interactive, preprocess
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run
from seqloom.models.transformer import TransformerConfig, TransformerModel, build_model

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device: run `pytest tests/cuda` on a GPU machine"
)

PAD = 1
CUDA = torch.device("cuda")


def _model(dtype: torch.dtype = torch.float32, **overrides: object) -> TransformerModel:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        encoder_embed_dim=64,
        encoder_ffn_embed_dim=128,
        encoder_layers=2,
        encoder_attention_heads=4,
        decoder_layers=2,
        decoder_attention_heads=4,
        dropout=0.0,
        **overrides,  # type: ignore[arg-type]
    )

    class Vocab:
        def __len__(self) -> int:
            return 203  # odd: the padded-vocabulary route is CPU-only and must stay off on CUDA

        def pad(self) -> int:
            return PAD

    return build_model(cfg, Vocab(), Vocab()).eval().to(device=CUDA, dtype=dtype)


def _batch(padded: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 203, (6, 11), generator=g)
    prev = torch.randint(4, 203, (6, 9), generator=g)
    prev[:, 0] = 2
    src[:, -1] = 2
    if padded:
        src[0, :4] = PAD  # left-padded sources
        src[3, :2] = PAD
    return src.to(CUDA), prev.to(CUDA)


def _step_by_step(model: TransformerModel, src: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    encoder_out = model.encode(src)
    cache = model.new_cache(src.size(0), prev.size(1))
    return torch.cat(
        [model.decode(prev[:, t : t + 1], encoder_out, cache=cache).logits for t in range(prev.size(1))], 1
    )


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-4), (torch.bfloat16, 0.1), (torch.float16, 2e-2)])
@torch.no_grad()
def test_cached_decoding_equals_full_forward(dtype: torch.dtype, atol: float) -> None:
    model = _model(dtype, decoder_normalize_before=True, encoder_normalize_before=True)
    src, prev = _batch()
    full = model(src, None, prev).logits
    assert full.dtype == dtype and full.shape == (6, 9, 203)
    torch.testing.assert_close(_step_by_step(model, src, prev).float(), full.float(), atol=atol, rtol=0)


@torch.no_grad()
def test_unpadded_bf16_forward_runs_on_the_flash_kernel_and_equals_the_math_kernel() -> None:
    """With no padding the model's attention is causal or unmasked, which the flash kernel accepts."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = _model(torch.bfloat16)
    src, prev = _batch(padded=False)
    with sdpa_kernel([SDPBackend.MATH]):
        reference = model(src, None, prev).logits.float()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        flash = model(src, None, prev).logits.float()
    torch.testing.assert_close(flash, reference, atol=0.1, rtol=0)
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):  # padding needs a mask: the memory-efficient kernel takes it
        padded_src, _ = _batch(padded=True)
        efficient = model(padded_src, None, prev).logits.float()
    with sdpa_kernel([SDPBackend.MATH]):
        torch.testing.assert_close(efficient, model(padded_src, None, prev).logits.float(), atol=0.1, rtol=0)


def test_compiled_training_step_equals_eager_on_cuda() -> None:
    model = _model().train()
    src, prev = _batch()
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(src, None, prev).logits
    out.float().logsumexp(-1).sum().backward()
    grad = model.decoder.layers[0].fc1.weight.grad.clone()  # type: ignore[union-attr]
    model.zero_grad()
    ref = model(src, None, prev).logits
    ref.float().logsumexp(-1).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grad, model.decoder.layers[0].fc1.weight.grad, atol=1e-4, rtol=1e-4)  # type: ignore[union-attr]


# --- the command lines on the GPU -------------------------------------------------------------------------------


def _corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        words = [rng.randrange(24) for _ in range(rng.randint(3, 11))]
        src.append(" ".join(f"s{w}" for w in words))
        tgt.append(" ".join(f"t{w}" for w in reversed(words)))
    return src, tgt


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cuda-e2e")
    for split, n, seed in (("train", 320, 1), ("valid", 24, 2), ("test", 40, 3)):
        src, tgt = _corpus(n, seed)
        (root / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train")]
    argv += ["--validpref", str(root / "valid"), "--testpref", str(root / "test")]
    argv += ["--destdir", str(root / "data-bin"), "--workers", "1"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def _train(data: Path, save_dir: Path, *extra: str) -> list[dict[str, float]]:
    argv = [str(data), "--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2"]
    argv += ["--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64"]
    argv += ["--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]
    argv += ["--dropout", "0.0", "--share-decoder-input-output-embed", "--optimizer", "adam", "--lr", "0.005"]
    argv += ["--adam-betas", "(0.9, 0.98)", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4"]
    argv += ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--max-tokens", "320"]
    argv += ["--max-update", "60", "--seed", "3", "--num-workers", "0", "--log-format", "json", "--log-interval", "1"]
    argv += ["--save-dir", str(save_dir), "--no-epoch-checkpoints", *extra]
    return run(parse_args(SPEC, argv)).history


@pytest.fixture(scope="module")
def fp32_run(data_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, float]]]:
    save = tmp_path_factory.mktemp("fp32")
    return save, _train(data_bin, save)


def test_fp32_training_on_cuda_follows_the_cpu_run(
    data_bin: Path, fp32_run: tuple[Path, list[dict[str, float]]], tmp_path: Path
) -> None:
    save, history = fp32_run
    cpu = _train(data_bin, tmp_path / "cpu", "--cpu", "--max-update", "10")
    assert [h["num_updates"] for h in history][:10] == [h["num_updates"] for h in cpu]
    for a, b in zip(history, cpu):  # same data order and no dropout: equal up to kernel rounding
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-3)
    losses = [h["loss"] for h in history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert not torch.backends.cuda.cudnn_sdp_enabled()  # cuDNN attention plans per shape: 2.7x slower bf16 steps
    state = load_checkpoint(save / "checkpoint_last.pt")  # loads on a CPU-only machine: tensors on the CPU
    assert all(t.device.type == "cpu" for t in state["model"].values())


@pytest.mark.parametrize("flag", ["--bf16", "--amp", "--fp16"])
def test_mixed_precision_training_on_cuda_learns_like_fp32(
    flag: str, data_bin: Path, fp32_run: tuple[Path, list[dict[str, float]]], tmp_path: Path
) -> None:
    _, reference = fp32_run
    history = _train(data_bin, tmp_path / "mixed", flag)
    losses = [h["loss"] for h in history]
    assert all(torch.isfinite(torch.tensor(losses)))
    final, expected = sum(losses[-5:]) / 5, sum(h["loss"] for h in reference[-5:]) / 5
    assert final == pytest.approx(expected, abs=0.3)
    state = load_checkpoint(tmp_path / "mixed" / "checkpoint_last.pt")
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())


def test_compiled_training_on_cuda_equals_eager(
    data_bin: Path, fp32_run: tuple[Path, list[dict[str, float]]], tmp_path: Path
) -> None:
    _, reference = fp32_run
    history = _train(data_bin, tmp_path / "compiled", "--compile", "--max-update", "12")
    for a, b in zip(history, reference):
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-3)


def test_empty_cache_freq_releases_cached_blocks(data_bin: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    release = torch.cuda.empty_cache
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: (calls.append(1), release())[1])
    _train(data_bin, tmp_path / "cache", "--empty-cache-freq", "4", "--max-update", "10", "--disable-validation")
    assert len(calls) == 3  # once 1, 5 and 9 updates are done (fairseq's rule)


def _generate(data: Path, ckpt: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    argv = [str(data), "--path", str(ckpt), "--gen-subset", "test", "--beam", "4", "--batch-size", "16"]
    assert generate.main([*argv, "--no-progress-bar", *extra]) == 0
    return capsys.readouterr().out.splitlines()


def _fields(lines: list[str], tag: str) -> dict[str, list[str]]:
    return {line.split("\t")[0]: line.split("\t")[1:] for line in lines if line.startswith(tag)}


def test_generate_runs_on_the_gpu_and_equals_the_cpu(
    data_bin: Path, fp32_run: tuple[Path, list[dict[str, float]]], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = fp32_run[0] / "checkpoint_last.pt"
    gpu = _generate(data_bin, ckpt, capsys=capsys)
    cpu = _generate(data_bin, ckpt, "--cpu", capsys=capsys)
    gpu_h, cpu_h = _fields(gpu, "H-"), _fields(cpu, "H-")
    assert len(gpu_h) == 40 and gpu_h.keys() == cpu_h.keys()
    for key, (score, tokens) in cpu_h.items():
        assert gpu_h[key][1] == tokens
        assert float(gpu_h[key][0]) == pytest.approx(float(score), abs=1e-4)
    assert gpu[-1].startswith("Generate test with beam=4: BLEU4 = ") and gpu[-1] == cpu[-1]
    # half-precision weights: most hypotheses as in fp32 (bf16 keeps 8 mantissa bits: near-ties flip)
    for flag, least in (("--fp16", 30), ("--bf16", 20)):
        half = _generate(data_bin, ckpt, flag, capsys=capsys)
        half_h = _fields(half, "H-")
        same = sum(half_h[key][1] == tokens for key, (_, tokens) in cpu_h.items())
        assert same >= least, f"{flag}: only {same}/40 hypotheses equal fp32's"
        assert half[-1].startswith("Generate test with beam=4: BLEU4 = ")


def test_interactive_runs_on_the_gpu_and_equals_the_cpu(
    data_bin: Path, fp32_run: tuple[Path, list[dict[str, float]]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    text = tmp_path / "in.txt"
    text.write_text("s1 s2 s3 s4\n\ns5 s6 s7\n", encoding="utf-8")
    argv = [str(data_bin), "--path", str(fp32_run[0] / "checkpoint_last.pt"), "--source-lang", "src"]
    argv += ["--target-lang", "tgt", "--beam", "3", "--input", str(text)]
    outs = []
    for extra in ([], ["--cpu"]):
        assert interactive.main([*argv, *extra]) == 0
        outs.append([line for line in capsys.readouterr().out.splitlines() if line[:2] in ("H-", "S-")])
    assert [line.split("\t")[2] for line in outs[0] if line.startswith("H-")] == [
        line.split("\t")[2] for line in outs[1] if line.startswith("H-")
    ]
    assert len(outs[0]) == 4  # two translated lines; the empty one is reported, not translated


# --- the hubs on the GPU: fairseq's fixture checkpoints, moved with .to("cuda") -----------------------------------


def test_translation_hub_on_the_gpu_gives_fairseqs_translations(fairseq_fixtures: Path) -> None:
    from seqloom.hub import TransformerModel

    mt = fairseq_fixtures / "mt"
    ref = json.loads((mt / "hub.json").read_text(encoding="utf-8"))
    hub = TransformerModel.from_pretrained(
        str(mt / "checkpoints"), checkpoint_file="checkpoint_best.pt", data_name_or_path=str(mt / "data-bin"),
        tokenizer="moses", bpe="subword_nmt", bpe_codes=str(mt / "text" / "bpe.codes"),
    )  # fmt: skip
    hub.to("cuda")
    assert next(hub.parameters()).is_cuda
    assert hub.translate(ref["inputs"], beam=5) == ref["translate_beam5"]
    top = hub.generate([hub.encode(ref["inputs"][0])], beam=5)[0][0]
    expected = ref["generate_beam5_top"][0]
    assert top.tokens.tolist() == expected["tokens"]
    assert float(top.score) == pytest.approx(expected["score"], abs=1e-4)
    hub.half()  # float16 weights; the scores stay float32
    halves = hub.translate(ref["inputs"], beam=5)
    assert sum(a == b for a, b in zip(halves, ref["translate_beam5"])) >= len(halves) // 2


def test_bart_hub_on_the_gpu_gives_fairseqs_fill_mask_and_features(fairseq_fixtures: Path, gpt2_bpe: Path) -> None:
    from seqloom.hub import BARTModel

    ref = json.loads((fairseq_fixtures / "bart" / "hub.json").read_text(encoding="utf-8"))
    gpt2 = gpt2_bpe
    hub = BARTModel.from_pretrained(
        str(fairseq_fixtures / "bart" / "model"), checkpoint_file="model.pt", bpe="gpt2",
        gpt2_encoder_json=str(gpt2 / "encoder.json"), gpt2_vocab_bpe=str(gpt2 / "vocab.bpe"),
    ).to("cuda")  # fmt: skip
    entry = ref["extract_features"]
    feats = hub.extract_features(torch.tensor(entry["ids"]))
    assert feats.is_cuda
    torch.testing.assert_close(feats[0].cpu(), torch.tensor(entry["all"]), atol=1e-4, rtol=0)
    results = hub.fill_mask([e["input"] for e in ref["fill_mask"]], topk=3)
    for got, expected in zip(results, ref["fill_mask"]):
        assert [text for text, _ in got] == [text for text, _ in expected["topk"]]
        for (_, score), (_, want) in zip(got, expected["topk"]):
            assert float(score) == pytest.approx(want, abs=1e-4)  # a 0-dim tensor on the GPU, as fairseq
    inputs = [e["input"] for e in ref["sample_beam1"]]
    assert hub.sample(inputs, beam=1) == [e["output"] for e in ref["sample_beam1"]]
    hub.register_classification_head("pair", num_classes=3)  # made on the model's device
    assert hub.predict("pair", hub.encode("In the beginning.")).shape == (1, 3)
