"""Evaluating trained models: language-model scoring and perplexity (``seqloom eval-lm``)."""
