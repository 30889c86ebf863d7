"""Building an optimizer by name, and reading/setting its learning rate."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

from seqloom import registry


def build_optimizer(name: str, cfg: object, params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    """The optimizer registered as ``name`` (``--optimizer``), built from its config and ``lr``.

    ``lr`` is the first value of fairseq's ``--lr`` list; the LR scheduler changes it afterwards.
    ``cfg`` may be None to use the optimizer's defaults.
    """
    import_optimizers()
    entry = registry.OPTIMIZERS.entry(name)
    if cfg is None:
        cfg = entry.config_cls() if entry.config_cls is not None else None
    elif entry.config_cls is not None and not isinstance(cfg, entry.config_cls):
        raise TypeError(
            f"--optimizer {name} expects a {entry.config_cls.__name__}, got {type(cfg).__name__}; "
            "build it with seqloom.config.from_namespace or pass None for the defaults"
        )
    params = list(params)
    if not params:
        raise ValueError(f"--optimizer {name}: the model has no trainable parameters")
    return entry.obj(cfg, params, float(lr))


def import_optimizers() -> None:
    """Registers the built-in optimizers (idempotent)."""
    from seqloom.optim import adafactor, adam, adamax, cpu_adam, nag, sgd  # noqa: F401


def get_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first param group (fairseq's ``optimizer.get_lr()``)."""
    return float(optimizer.param_groups[0]["lr"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets ``lr`` on every param group (fairseq's ``optimizer.set_lr(lr)``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


# options of torch's param groups that choose a kernel, not the math: kept when loading a saved state
KERNEL_OPTIONS = ("fused", "foreach", "capturable", "differentiable", "maximize", "decoupled_weight_decay")


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, state_dict: dict[str, Any], *, overrides: dict[str, Any] | None = None
) -> None:
    """Loads a saved optimizer state (ours or fairseq's ``last_optimizer_state``) without losing our kernels.

    torch replaces the param groups by the saved ones, which would drop the fused/foreach choice (fairseq's
    groups have no such keys); those options are restored afterwards, and ``overrides`` (fairseq's
    ``--optimizer-overrides``) are applied to every group. The saved tensors are copied, never adopted.
    fairseq's integer ``step`` becomes the float tensor that torch's fused kernels expect.
    """
    kept = [{k: g[k] for k in KERNEL_OPTIONS if k in g} for g in optimizer.param_groups]
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(kept):
        raise ValueError(
            f"the saved optimizer state has {len(saved_groups)} param groups, this optimizer {len(kept)}: "
            "was it saved for another model or optimizer? (--reset-optimizer starts afresh)"
        )
    optimizer.load_state_dict(copy.deepcopy(state_dict))
    for group, options in zip(optimizer.param_groups, kept):
        group.update(options)
        group.update(overrides or {})
        for p in group["params"]:
            _fix_step(optimizer.state.get(p), p, fused=bool(group.get("fused")) or bool(group.get("capturable")))


def _fix_step(state: dict[str, Any] | None, p: torch.Tensor, *, fused: bool) -> None:
    if not state or "step" not in state:
        return
    step = state["step"]
    if fused:
        state["step"] = torch.as_tensor(float(step), dtype=torch.float32, device=p.device)


# fairseq's trainer refuses to load an optimizer state saved under another class name
# (``optimizer_history[-1]["optimizer_name"]``); these are its names for our optimizers (fp32 training)
FAIRSEQ_OPTIMIZER_NAMES = {
    "adam": "FairseqAdam",
    "sgd": "SGD",
    "nag": "FairseqNAG",
    "adagrad": "Adagrad",
    "adafactor": "FairseqAdafactor",
    "adamax": "FairseqAdamax",
    "adadelta": "Adadelta",
    "cpu_adam": "FairseqCPUAdam",
    "lamb": "FairseqLAMB",
}


def export_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` in the form fairseq's optimizers load (``last_optimizer_state``).

    torch's kernel options are dropped from the param groups and tensor ``step`` counters become ints,
    which is what fairseq's Adam/Adafactor arithmetic (``beta ** step``) expects; our
    :func:`load_optimizer_state` reads the result back unchanged.
    """
    state = optimizer.state_dict()
    groups = [{k: v for k, v in g.items() if k not in KERNEL_OPTIONS} for g in state["param_groups"]]
    per_param = {}
    for key, s in state["state"].items():
        s = dict(s)
        if isinstance(s.get("step"), torch.Tensor):
            s["step"] = int(s["step"].item())
        per_param[key] = s
    return {"state": per_param, "param_groups": groups}
