"""seqloom: sequence modeling on PyTorch, compatible with fairseq's formats."""

__version__ = "0.1.0"
