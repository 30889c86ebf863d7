"""Imports every built-in component once, so that its ``register`` decorators fill the registries."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from seqloom import registry

BUILTIN_MODULES: tuple[str, ...] = (
    "seqloom.models.transformer",
    "seqloom.models.transformer_lm",
    "seqloom.models.bart.builder",
    "seqloom.models.bart.interop",
    "seqloom.models.roberta.builder",
    "seqloom.models.roberta.interop",
    "seqloom.tasks.translation",
    "seqloom.tasks.translation_from_pretrained_bart",
    "seqloom.tasks.translation_multi_simple_epoch",
    "seqloom.tasks.language_modeling",
    "seqloom.tasks.denoising",
    "seqloom.tasks.multilingual_denoising",
    "seqloom.tasks.sentence_prediction",
    "seqloom.tasks.sentence_ranking",
    "seqloom.tasks.masked_lm",
    "seqloom.tokenizers.moses_tokenizer",
    "seqloom.tokenizers.space_tokenizer",
    "seqloom.tokenizers.subword_nmt_bpe",
    "seqloom.tokenizers.gpt2_bpe",
    "seqloom.tokenizers.sentencepiece_bpe",
    "seqloom.tokenizers.characters_bpe",
    "seqloom.tokenizers.bytes_bpe",
    "seqloom.tokenizers.hf_byte_bpe",
    "seqloom.tokenizers.fastbpe",
    "seqloom.tokenizers.bert_bpe",
    "seqloom.tokenizers.byte_bpe",
    "seqloom.optim.adam",
    "seqloom.optim.sgd",
    "seqloom.optim.nag",
    "seqloom.optim.adafactor",
    "seqloom.optim.adamax",
    "seqloom.optim.cpu_adam",
    "seqloom.optim.lamb",
    "seqloom.optim.lr_scheduler.fixed",
    "seqloom.optim.lr_scheduler.inverse_sqrt",
    "seqloom.optim.lr_scheduler.polynomial_decay",
    "seqloom.optim.lr_scheduler.cosine",
    "seqloom.optim.lr_scheduler.reduce_lr_on_plateau",
    "seqloom.optim.lr_scheduler.tri_stage",
    "seqloom.optim.lr_scheduler.step",
    "seqloom.optim.lr_scheduler.triangular",
    "seqloom.optim.lr_scheduler.manual",
    "seqloom.criterions.cross_entropy",
    "seqloom.criterions.label_smoothed_cross_entropy",
    "seqloom.criterions.label_smoothed_cross_entropy_with_alignment",
    "seqloom.criterions.adaptive_loss",
    "seqloom.criterions.sentence_prediction",
    "seqloom.criterions.sentence_ranking",
    "seqloom.criterions.masked_lm",
)


# the hubs register their from_pretrained under the model family's name (registry.HUBS); they are imported
# only when a hub is asked for, not with the other built-ins (commands need none of them)
BUILTIN_HUBS: tuple[str, ...] = (
    "seqloom.hub.pretrained",
    "seqloom.hub.language_model",
    "seqloom.hub.bart",
    "seqloom.hub.roberta",
)


def import_builtins() -> None:
    for name in BUILTIN_MODULES:
        importlib.import_module(name)


def import_hubs() -> None:
    """Imports the built-in hubs, whose modules fill ``registry.HUBS`` and ``registry.EXPORTERS``."""
    for name in BUILTIN_HUBS:
        importlib.import_module(name)


def load_pretrained(family: str, model_name_or_path: str | os.PathLike[str], checkpoint_file: str, data_name_or_path: str,
                    **overrides: Any) -> Any:  # fmt: skip
    """The hub of model family ``family`` (``transformer``, ``transformer_lm``, ``bart``, ``roberta``) loaded by
    its registered ``from_pretrained``: what a model class's ``from_pretrained`` returns, as in fairseq."""
    import_hubs()
    load = registry.HUBS.get(family)
    return load(model_name_or_path, checkpoint_file, data_name_or_path, **overrides)


def import_user_dir(user_dir: str) -> None:
    """Import a user's plugin package (fairseq's ``--user-dir``) so that its registrations run."""
    path = Path(user_dir).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"--user-dir {user_dir}: no such file or directory")
    module_name = path.stem
    if module_name in sys.modules:
        return
    init = path / "__init__.py" if path.is_dir() else path
    if not init.exists():
        raise FileNotFoundError(f"--user-dir {user_dir}: a package needs an __init__.py ({init} is missing)")
    spec = importlib.util.spec_from_file_location(
        module_name, init, submodule_search_locations=[str(path)] if path.is_dir() else None
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
