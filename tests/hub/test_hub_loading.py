"""from_pretrained on real and crafted fairseq checkpoints: config flavours, old keys, and errors for people."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import types
import typing
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from seqloom.checkpoint import CheckpointError, load_checkpoint
from seqloom.hub import TransformerModel

# ---- a pickled omegaconf DictConfig, crafted without omegaconf -----------------------------------------
# Classes with omegaconf's module/class names and its pickled attribute layout (``_content``, ``_metadata``,
# ``_parent`` cycles, ``defaultdict(dict)`` resolver caches); they exist in sys.modules only while saving.


class _Metadata:
    def __init__(self) -> None:
        self.ref_type, self.object_type, self.optional, self.key = typing.Any, dict, True, None
        self.flags: dict[str, bool] = {}
        self.resolver_cache: defaultdict[str, dict[str, Any]] = defaultdict(dict)


class _DictConfig:
    def __init__(self, content: dict[str, Any], parent: Any = None) -> None:
        self.__dict__.update(_metadata=_Metadata(), _parent=parent, _flags_cache=None, _content={})
        for key, value in content.items():
            self._content[key] = _node(value, self)


class _ListConfig:
    def __init__(self, content: list[Any], parent: Any = None) -> None:
        self.__dict__.update(_metadata=_Metadata(), _parent=parent, _flags_cache=None, _content=[])
        self._content.extend(_node(v, self) for v in content)


class _AnyNode:
    def __init__(self, value: Any, parent: Any) -> None:
        self.__dict__.update(_val=value, _metadata=_Metadata(), _parent=parent, _flags_cache=None)


def _node(value: Any, parent: Any) -> Any:
    if isinstance(value, dict):
        return _DictConfig(value, parent)
    if isinstance(value, list):
        return _ListConfig(value, parent)
    return _AnyNode(value, parent)


_LOOKALIKES = {
    "omegaconf.dictconfig": ("DictConfig", _DictConfig),
    "omegaconf.listconfig": ("ListConfig", _ListConfig),
    "omegaconf.nodes": ("AnyNode", _AnyNode),
    "omegaconf.base": ("ContainerMetadata", _Metadata),
}


def save_with_omegaconf_cfg(state: dict[str, Any], cfg: dict[str, Any], path: Path) -> None:
    """``torch.save`` of ``state`` with ``cfg`` pickled as omegaconf classes (as some fairseq versions did)."""
    saved = {name: sys.modules.get(name) for name in ("omegaconf", *_LOOKALIKES)}
    sys.modules["omegaconf"] = types.ModuleType("omegaconf")
    for module, (name, cls) in _LOOKALIKES.items():
        sys.modules[module] = mod = types.ModuleType(module)
        setattr(mod, name, cls)
        cls.__module__, cls.__qualname__ = module, name
    try:
        torch.save({**state, "cfg": _DictConfig(cfg)}, path)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


# ---- helpers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mt_state(fairseq_fixtures: Path) -> dict[str, Any]:
    return load_checkpoint(fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt")


def _model_dir(tmp_path: Path, fixtures: Path, *, codes_name: str | None = "bpe.codes") -> Path:
    """A fresh model directory holding the mt dictionaries (and the BPE codes under ``codes_name``)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for lang in ("en", "es"):
        shutil.copyfile(fixtures / "mt" / "data-bin" / f"dict.{lang}.txt", model_dir / f"dict.{lang}.txt")
    if codes_name:
        shutil.copyfile(fixtures / "mt" / "text" / "bpe.codes", model_dir / codes_name)
    return model_dir


def _hydra_model_cfg() -> dict[str, Any]:
    """The mt model's options as a hydra-era nested ``model`` group (with interpolations)."""
    layer = {"embed_dim": 64, "ffn_embed_dim": 128, "layers": 2, "attention_heads": 4, "learned_pos": False}
    return {
        "_name": "transformer",
        "encoder": dict(layer),
        "decoder": {**layer, "output_dim": "${model.decoder.embed_dim}", "input_dim": "${model.decoder.embed_dim}"},
        "share_decoder_input_output_embed": True,
        "dropout": 0.1,
        "max_source_positions": 1024,
        "max_target_positions": 1024,
    }


def _old_fairseq_keys(sd: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """The mt weights under fairseq <= 0.6 names: fused q/k/v, layer_norms.N, embed_out, _float_tensor."""
    norms = {"self_attn_layer_norm": "0", "encoder_attn_layer_norm": "1", "final_layer_norm": "2"}
    for key, value in sd.items():
        if key.endswith(
            ("q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias", "k_proj.bias", "v_proj.bias")
        ):
            if ".q_proj." in key:
                prefix, kind = key.split(".q_proj.")
                fused = torch.cat([sd[f"{prefix}.{p}_proj.{kind}"] for p in "qkv"])
                yield f"{prefix}.in_proj_{kind}", fused
            continue
        if key == "decoder.output_projection.weight":
            yield "decoder.embed_out", value.clone()  # an untied output matrix, the old name
            continue
        for new, idx in norms.items():
            if f".{new}." in key:
                idx = "1" if key.startswith("encoder.") and new == "final_layer_norm" else idx
                key = key.replace(f".{new}.", f".layer_norms.{idx}.")
        yield key, value
    yield "encoder.embed_positions._float_tensor", torch.zeros(1)
    yield "decoder.embed_positions._float_tensor", torch.zeros(1)


# ---- checkpoint flavours ------------------------------------------------------------------------------


def test_pickled_omegaconf_cfg_loads_through_the_hub_without_omegaconf(
    tmp_path: Path, fairseq_fixtures: Path, mt_state: dict[str, Any], hub_json: dict[str, Any]
) -> None:
    model_dir = _model_dir(tmp_path, fairseq_fixtures)
    cfg = {
        "model": _hydra_model_cfg(),
        "task": {"_name": "translation", "data": "/train/machine/data-bin", "source_lang": "en", "target_lang": "es"},
        "dataset": {"max_tokens": 2048, "batch_size": None, "required_batch_size_multiple": 8},
        "generation": {"beam": 5, "lenpen": 1.0, "print_alignment": None},
        # the training machine's path: found again as bpe.codes in the model directory
        "bpe": {"_name": "subword_nmt", "bpe_codes": "/train/machine/bpe.codes", "bpe_separator": "@@"},
        "tokenizer": {"_name": "moses", "source_lang": "${task.source_lang}", "target_lang": "${task.target_lang}"},
        "optimization": {"lr": [0.001], "update_freq": [1]},
    }
    save_with_omegaconf_cfg({"args": None, "model": mt_state["model"]}, cfg, model_dir / "model.pt")
    assert "omegaconf" not in sys.modules
    hub = TransformerModel.from_pretrained(str(model_dir))  # checkpoint_file='model.pt', data '.'
    assert "omegaconf" not in sys.modules
    assert hub.translate(hub_json["inputs"][:3]) == hub_json["translate_beam5"][:3]
    assert hub.batching.max_tokens == 2048 and hub.bpe is not None and hub.tokenizer is not None


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_code_hidden_in_an_omegaconf_cfg_never_runs(tmp_path: Path, fairseq_fixtures: Path) -> None:
    model_dir = _model_dir(tmp_path, fairseq_fixtures)
    marker = tmp_path / "pwned"
    save_with_omegaconf_cfg({"model": {}}, {"model": {"_name": "transformer", "x": _Payload(marker)}},
                            model_dir / "model.pt")  # fmt: skip
    with pytest.raises(CheckpointError, match=r"model\.pt.*refused.*system"):
        TransformerModel.from_pretrained(str(model_dir))
    assert not marker.exists()


def test_old_keys_and_args_namespace_are_upgraded(
    tmp_path: Path, fairseq_fixtures: Path, mt_state: dict[str, Any], hub_json: dict[str, Any]
) -> None:
    model_dir = _model_dir(tmp_path, fairseq_fixtures, codes_name="bpecodes")  # fairseq's conventional name
    args = argparse.Namespace(**vars(mt_state["cfg"]["model"]))
    args.share_decoder_input_output_embed = False  # old checkpoints: embed_out, a separate output matrix
    args.tokenizer, args.bpe = "moses", "subword_nmt"
    args.source_lang, args.target_lang = "en", "es"  # the model directory has no split files to infer them from
    old = dict(_old_fairseq_keys(mt_state["model"]))
    assert "decoder.layers.0.encoder_attn.in_proj_weight" in old and "encoder.layers.1.layer_norms.1.bias" in old
    torch.save({"args": args, "model": old}, model_dir / "checkpoint_old.pt")
    hub = TransformerModel.from_pretrained(str(model_dir), checkpoint_file="checkpoint_old.pt")
    assert hub.model.decoder.output_projection.weight is not hub.model.decoder.embed_tokens.weight
    assert hub.translate(hub_json["inputs"][:3]) == hub_json["translate_beam5"][:3]


def test_ensemble_of_two_checkpoints(fairseq_fixtures: Path, mt_kwargs: dict[str, Any], mt_hub: Any,
                                     hub_json: dict[str, Any]) -> None:  # fmt: skip
    kwargs = {**mt_kwargs, "checkpoint_file": f"checkpoint_best.pt{os.pathsep}checkpoint_last.pt"}
    hub = TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **kwargs)
    assert len(hub.models) == 2  # the two files hold the same weights: the ensemble translates the same
    inputs = hub_json["inputs"][:2]
    assert hub.translate(inputs, max_len_b=10) == mt_hub.translate(inputs, max_len_b=10)


# ---- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["transformer.wmt19.en-de", "https://dl.fbaipublicfiles.com/fairseq/models/x.tar.gz"])
def test_model_names_and_urls_are_never_downloaded(name: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"never downloads.*local directory"):
        TransformerModel.from_pretrained(name)


def test_missing_checkpoint_names_the_file_and_keyword(fairseq_fixtures: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.pt: no such file; pass checkpoint_file=.*checkpoint_best\.pt"):
        TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"))


def test_missing_dictionary_names_the_file_and_keyword(tmp_path: Path, fairseq_fixtures: Path,
                                                       mt_kwargs: dict[str, Any]) -> None:  # fmt: skip
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(fairseq_fixtures / "mt" / "data-bin" / "dict.en.txt", data / "dict.en.txt")
    kwargs = {**mt_kwargs, "data_name_or_path": str(data), "source_lang": "en", "target_lang": "es"}
    with pytest.raises(FileNotFoundError, match=r"dict\.es\.txt: no such file.*data_name_or_path="):
        TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **kwargs)


def test_missing_bpe_codes_name_the_keyword(tmp_path: Path, fairseq_fixtures: Path, mt_kwargs: dict[str, Any]) -> None:
    folder = str(fairseq_fixtures / "mt" / "checkpoints")
    without = {k: v for k, v in mt_kwargs.items() if k != "bpe_codes"}
    with pytest.raises(ValueError, match=r"--bpe-codes is required.*bpe_codes=PATH"):
        TransformerModel.from_pretrained(folder, **without)
    with pytest.raises(FileNotFoundError, match=r"nope\.codes: no such file.*bpe_codes=PATH"):
        TransformerModel.from_pretrained(folder, **{**mt_kwargs, "bpe_codes": str(tmp_path / "nope.codes")})


def test_language_model_checkpoint_points_to_the_lm_hub(fairseq_fixtures: Path) -> None:
    lm = fairseq_fixtures / "lm"
    with pytest.raises(ValueError, match=r"'transformer_lm' model.*TransformerLanguageModel\.from_pretrained"):
        TransformerModel.from_pretrained(str(lm / "checkpoints"), "checkpoint_best.pt", str(lm / "data-bin"))


def test_unknown_keyword_is_named(fairseq_fixtures: Path, mt_kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) bpe_code;"):
        TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **mt_kwargs, bpe_code="x")


def test_vocabulary_mismatch_names_both_sizes_and_the_likely_cause(
    tmp_path: Path, fairseq_fixtures: Path, mt_kwargs: dict[str, Any]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for lang in ("en", "es"):  # dictionaries one symbol short, as when a task appends <mask> at load time
        lines = (fairseq_fixtures / "mt" / "data-bin" / f"dict.{lang}.txt").read_text(encoding="utf-8").splitlines()
        (data / f"dict.{lang}.txt").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    rows = len(lines) + 4  # four special symbols precede the file's entries
    kwargs = {**mt_kwargs, "data_name_or_path": str(data), "source_lang": "en", "target_lang": "es"}
    with pytest.raises(ValueError) as err:
        TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **kwargs)
    message = str(err.value)
    assert f"has {rows} rows but {data / 'dict.en.txt'} has {rows - 1} symbols" in message
    assert "checkpoint_best.pt" in message and "<mask>" in message and "language tokens" in message
