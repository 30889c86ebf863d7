"""Times seqloom's transformer against fairseq's on the same weights and batch (model only, no trainer).

Measures, per model, the median CPU seconds of a training step (train-mode forward, summed NLL, backward)
and of teacher-forced incremental decoding through each toolkit's cache, alternating the two models
``--repeats`` times, and checks that both give the same eval-mode logits. It needs fairseq, so run it with
the fairseq virtualenv's Python (seqloom is imported from ``src/``)::

    ../peer-venvs/fs/bin/python benchmarks/transformer_model.py [--threads 1] [--dim 256] [--layers 3]

CPU time (not wall time) is reported so that other load on the machine disturbs the figures less.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fairseq.data import Dictionary  # noqa: E402
from fairseq.models.transformer import TransformerModel as FairseqTransformer  # noqa: E402
from fairseq.models.transformer import base_architecture  # noqa: E402

from seqloom.models.transformer import build_model  # noqa: E402
from seqloom.models.transformer.interop import config_from_fairseq_args  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--src-len", type=int, default=25)
    p.add_argument("--tgt-len", type=int, default=27)
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args()


def models(opts: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, Dictionary]:
    d = Dictionary()
    for i in range(opts.vocab - len(d)):
        d.add_symbol(f"w{i}")

    class Task:
        source_dictionary = target_dictionary = d

    args = argparse.Namespace(
        arch="transformer",
        encoder_embed_dim=opts.dim,
        encoder_ffn_embed_dim=4 * opts.dim,
        encoder_attention_heads=max(1, opts.dim // 64),
        decoder_attention_heads=max(1, opts.dim // 64),
        encoder_layers=opts.layers,
        decoder_layers=opts.layers,
        share_decoder_input_output_embed=True,
        dropout=0.1,
    )
    base_architecture(args)
    torch.manual_seed(0)
    theirs = FairseqTransformer.build_model(args, Task())
    torch.manual_seed(0)
    ours = build_model(config_from_fairseq_args(vars(args)), d, d)
    return theirs, ours, d


def batch(opts: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b, s, t = opts.batch, opts.src_len, opts.tgt_len
    src = torch.randint(4, opts.vocab, (b, s), generator=g)
    src[:, -1] = 2
    for i in range(0, b, 3):
        src[i, : i % 7] = 1  # some left padding
    tgt = torch.randint(4, opts.vocab, (b, t), generator=g)
    for i in range(0, b, 4):
        tgt[i, t - (i % 5) :] = 1  # some right padding
    prev = torch.cat([torch.full((b, 1), 2), tgt[:, :-1]], dim=1)
    prev[tgt.eq(1)] = 1
    return src, prev, tgt


def cpu_seconds(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    opts = parse()
    torch.set_num_threads(opts.threads)
    theirs, ours, _ = models(opts)
    src, prev, tgt = batch(opts)

    def logits_of(model: torch.nn.Module) -> torch.Tensor:
        out = model(src, None, prev)
        return out[0] if isinstance(out, tuple) else out.logits

    def train_step(model: torch.nn.Module) -> None:
        model.train()
        lprobs = torch.log_softmax(logits_of(model).float(), dim=-1).gather(-1, tgt[..., None])[..., 0]
        (-lprobs.masked_fill(tgt.eq(1), 0).sum()).backward()

    @torch.no_grad()
    def decode_fairseq() -> None:
        enc, state = theirs.encoder(src), {}
        for t in range(prev.size(1)):
            theirs.decoder(prev[:, : t + 1], enc, incremental_state=state)

    @torch.no_grad()
    def decode_seqloom() -> None:
        enc, cache = ours.encode(src), ours.new_cache(src.size(0), prev.size(1))
        for t in range(prev.size(1)):
            ours.decode(prev[:, t : t + 1], enc, cache=cache)

    theirs.eval(), ours.eval()
    with torch.no_grad():
        diff = (logits_of(theirs) - logits_of(ours)).abs().max().item()
    print(f"eval logits max |diff| = {diff:.2e}")
    tasks = {
        "train step": {"fairseq": lambda: train_step(theirs), "seqloom": lambda: train_step(ours)},
        "incremental decoding": {"fairseq": decode_fairseq, "seqloom": decode_seqloom},
    }
    theirs.eval(), ours.eval()
    for name, fns in tasks.items():
        times: dict[str, list[float]] = {tool: [] for tool in fns}
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(opts.repeats):
            for tool, fn in fns.items():
                times[tool].append(cpu_seconds(fn))
        med = {tool: statistics.median(v) for tool, v in times.items()}
        print(
            f"{name}: fairseq {med['fairseq']:.3f} s, seqloom {med['seqloom']:.3f} s (CPU, median of {opts.repeats}), "
            f"speed ratio seqloom/fairseq {med['fairseq'] / med['seqloom']:.2f}x"
        )


if __name__ == "__main__":
    main()
