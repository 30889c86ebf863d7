"""FSDP helpers that need no process group: a full checkpoint that does not fit is named, key by key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqloom.trainer.sharding import full_tensors, is_sharded, load_full_model_state


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_a_full_state_loads_into_an_unsharded_model_exactly() -> None:
    source, target = _model(), nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    load_full_model_state(target, source.state_dict(), source="ckpt.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
    assert not is_sharded(target)
    nested = {"a": [torch.ones(2)], "b": (torch.zeros(1), 3)}
    assert full_tensors(nested)["b"][1] == 3 and torch.equal(full_tensors(nested)["a"][0], torch.ones(2))


def test_missing_unexpected_and_misshapen_keys_name_the_file_and_key() -> None:
    target = _model()
    state = _model().state_dict()
    with pytest.raises(RuntimeError, match=r"ckpt\.pt: .*missing keys \['2.bias'\]"):
        load_full_model_state(target, {k: v for k, v in state.items() if k != "2.bias"}, source="ckpt.pt")
    with pytest.raises(RuntimeError, match=r"unexpected keys \['extra'\]"):
        load_full_model_state(target, {**state, "extra": torch.zeros(1)}, source="ckpt.pt")
    with pytest.raises(RuntimeError, match=r"ckpt\.pt: 0.weight has shape \(3, 5\) in the checkpoint, \(3, 4\)"):
        load_full_model_state(target, {**state, "0.weight": torch.zeros(3, 5)}, source="ckpt.pt")


def test_fsdp_refuses_torch_releases_whose_fully_shard_fails_with_the_way_out() -> None:
    from seqloom.devices import torch_release
    from seqloom.trainer.sharding import check_fsdp_support

    assert torch_release("2.13.0+cpu") == (2, 13) and torch_release("2.6.0") == (2, 6)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    with pytest.raises(ValueError, match=r"on the CPU needs torch >= 2\.13: torch 2\.6\.0\+cu124's .*pytorch_ddp"):
        check_fsdp_support(cpu, "2.6.0+cu124")
    with pytest.raises(ValueError, match=r"needs torch >= 2\.6 .*this is torch 2\.4\.1"):
        check_fsdp_support(cuda, "2.4.1")
    check_fsdp_support(cuda, "2.11.0")  # fully_shard on GPUs ran on torch 2.11 (tests/cuda)
    check_fsdp_support(cpu, "2.13.0+cpu")
    check_fsdp_support(cpu, "3.0.0")
