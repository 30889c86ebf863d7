"""``select_device``: fairseq's placement rule, and cuDNN attention off on CUDA (it plans per shape)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from seqloom.devices import select_device


@pytest.fixture
def cudnn_sdp_flag() -> Iterator[None]:
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(True)
    yield
    torch.backends.cuda.enable_cudnn_sdp(before)


def test_cpu_flag_or_no_cuda_means_the_cpu_and_leaves_attention_kernels_alone(
    cudnn_sdp_flag: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert select_device(cpu=True) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(cpu=False, index=1) == torch.device("cpu")
    assert torch.backends.cuda.cudnn_sdp_enabled()


def test_cuda_turns_off_the_per_shape_cudnn_attention_kernel(
    cudnn_sdp_flag: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(cpu=True) == torch.device("cpu")
    assert torch.backends.cuda.cudnn_sdp_enabled()  # --cpu: nothing changes
    assert select_device(cpu=False) == torch.device("cuda")
    assert select_device(cpu=False, index=1) == torch.device("cuda", 1)
    assert not torch.backends.cuda.cudnn_sdp_enabled()


def test_more_torchrun_processes_than_gpus_is_named_before_cuda_fails(
    cudnn_sdp_flag: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun's LOCAL_RANK picks the GPU: rank 1 on a one-GPU machine gets the fix, not 'invalid device ordinal'."""
    from seqloom.trainer.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK=1 needs GPU 1, but this machine has 1: .*--cpu"):
        init_distributed(cpu=False)


def test_one_process_on_a_many_gpu_machine_says_how_to_use_them_all(
    cudnn_sdp_flag: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fairseq-train spawns one process per visible GPU; seqloom trains on one and names torchrun."""
    import logging

    from seqloom.trainer.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with caplog.at_level(logging.WARNING):
        info = init_distributed(cpu=False)
    assert info.device == torch.device("cuda", 0) and info.world_size == 1
    assert "4 GPUs are visible and this run uses one" in caplog.text and "--nproc-per-node 4" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        init_distributed(cpu=True)
    assert "GPUs are visible" not in caplog.text
