"""Rewrites a checkpoint that fairseq 0.12 trained into the layout of fairseq's released models.

Run with fairseq's interpreter (see ``make_release_layouts.sh``):

    python release_layout_checkpoint.py args TRAINED OUT -- TRAINING_ARGV...
    python release_layout_checkpoint.py oldest TRAINED OUT -- TRAINING_ARGV...

``args``: what the 2019-2020 releases (wmt19, wmt16 re-release, bart.large, mbart.cc25, m2m_100) hold: an
``args`` Namespace (fairseq's training parser applied to TRAINING_ARGV, arch defaults filled in, as those
fairseq versions saved it), no ``cfg``, the model's state dict, ``optimizer_history`` and ``extra_state``.

``oldest``: the pre-2019 layout: ``args`` with ``max_positions`` in place of the source/target limits,
no ``task``, a float ``lr`` and ``min_lr``; the top-level ``optimizer`` / ``best_loss`` / ``epoch`` /
``batch_offset`` / ``val_loss`` entries instead of ``optimizer_history`` and ``extra_state``; and the old
key names (fused ``in_proj_weight``/``in_proj_bias``, ``layer_norms.K``, ``decoder.embed_out``, no
``*.version``).
"""

from __future__ import annotations

import sys

import torch
from fairseq import options

OLD_LAYER_NORMS = {
    "encoder": {"self_attn_layer_norm": "0", "final_layer_norm": "1"},
    "decoder": {"self_attn_layer_norm": "0", "encoder_attn_layer_norm": "1", "final_layer_norm": "2"},
}


def training_args(argv: list[str]):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, argv)


def old_keys(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        if key.endswith(".version") or key == "decoder.output_projection.weight" and "decoder.embed_out" in out:
            continue
        parts = key.split(".")
        if len(parts) > 3 and parts[1] == "layers" and parts[3] in OLD_LAYER_NORMS[parts[0]]:
            parts[3:4] = ["layer_norms", OLD_LAYER_NORMS[parts[0]][parts[3]]]
        out[".".join(parts)] = value
    for key in [k for k in out if k.endswith("q_proj.weight") or k.endswith("q_proj.bias")]:
        prefix, kind = key.rsplit("q_proj.", 1)
        fused = [out.pop(f"{prefix}{p}_proj.{kind}") for p in ("q", "k", "v")]
        out[f"{prefix}in_proj_{kind}"] = torch.cat(fused, dim=0)
    if "decoder.output_projection.weight" in out:
        weight = out.pop("decoder.output_projection.weight")
        if not torch.equal(weight, out.get("decoder.embed_tokens.weight", torch.empty(0))):
            out["decoder.embed_out"] = weight  # an untied output matrix had this name
    return out


def main() -> None:
    mode, trained, out = sys.argv[1:4]
    assert sys.argv[4] == "--"
    args = training_args(sys.argv[5:])
    state = torch.load(trained, map_location="cpu", weights_only=False)
    if mode == "args":
        layout = {
            "args": args,
            "model": state["model"],
            "optimizer_history": state["optimizer_history"],
            "extra_state": {"train_iterator": state["extra_state"]["train_iterator"], "val_loss": None},
        }
    else:
        args.max_positions = getattr(args, "max_source_positions", 1024)
        for name in ("max_source_positions", "max_target_positions", "task"):
            if hasattr(args, name):
                delattr(args, name)
        args.lr = float(args.lr[0])
        args.min_lr = args.stop_min_lr
        delattr(args, "stop_min_lr")
        layout = {
            "args": args,
            "model": old_keys(state["model"]),
            "optimizer": {"state": {}, "param_groups": []},
            "best_loss": 9.99,
            "epoch": 1,
            "batch_offset": 0,
            "val_loss": 9.99,
        }
    torch.save(layout, out)


if __name__ == "__main__":
    main()
