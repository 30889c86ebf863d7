"""The names of fairseq's ``fairseq.data.data_utils`` that user code imports (fairseq's RoBERTa README batches
hub inputs with ``collate_tokens(tokens, pad_idx=1)``)."""

from seqloom.data.language_pair_dataset import collate_tokens

__all__ = ["collate_tokens"]
