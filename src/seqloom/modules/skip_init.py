"""Building a model whose weights a checkpoint is about to replace, without drawing its random initial values.

A model built for inference gets its random initialisation (``torch.nn.init``, ``Tensor.normal_`` ...) and then
has every value replaced by ``load_state_dict``: on transformer-big that wasted ~1.7 s of a one-thread start.
:func:`build_and_load` builds inside :func:`skip_random_init`, where drawing random values into a parameter does
nothing (the parameter keeps the memory it was allocated with), and loads the state dict strictly.

Only random draws into ``nn.Parameter`` objects are skipped. Whatever a module computes (sinusoidal position
tables, non-persistent buffers, constant fills such as a LayerNorm's ones) is made as usual, so a model built
this way and loaded equals one built normally and loaded, bit for bit.

A strict load may still keep some of the model's own values: a model's ``load_state_dict`` upgrade can fill a
key the checkpoint lacks from the model itself (BART's and RoBERTa's classification heads absent from the
checkpoint). :func:`build_and_load` sees such a value (it shares the model's memory) before anything is
copied, and then builds the model again normally and loads it, so those values get their usual initialisation.

Random numbers: a build that skips the initialisation draws nothing from the random generators, so loading
leaves them where they were (``torch.manual_seed(s)`` before loading means the same as after it). fairseq
draws the initial weights before loading, so its seeded sampling after a load starts further along the
stream; ``random_init=True`` builds the normal way for the commands that keep that stream equal to fairseq's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

M = TypeVar("M", bound=nn.Module)

# the calls that draw random initial values: ``torch.nn.init``'s functions that dispatch on their tensor
# argument, and the tensor methods the others (xavier_*, kaiming_normal_, trunc_normal_ ...) end in
RANDOM_INITIALISERS = frozenset(
    {nn.init.uniform_, nn.init.normal_, nn.init.kaiming_uniform_, Tensor.uniform_, Tensor.normal_}
)


class _SkipParameterDraws(TorchFunctionMode):
    """Turns a random initialiser called on an ``nn.Parameter`` into a no-op; every other call runs as usual."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in RANDOM_INITIALISERS:
            target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes its tensor by keyword
            if isinstance(target, nn.Parameter):
                return target
        return func(*args, **kwargs)


@contextmanager
def skip_random_init() -> Iterator[None]:
    """Inside: parameters are left as allocated instead of drawn at random (their values are garbage until
    loaded). Only for building a model whose every parameter is loaded next; see the module docstring."""
    with _SkipParameterDraws():
        yield


class _OwnValueKept(Exception):
    """Raised by :func:`_check_replaced` when a load would keep a value of the model itself."""


def _storages(model: nn.Module) -> set[int]:
    tensors = [*model.parameters(), *model.buffers()]
    return {t.untyped_storage().data_ptr() for t in tensors if t.numel() > 0}


def _check_replaced(module: nn.Module, state_dict: Mapping[str, Any], prefix: str, *_: Any) -> None:
    """``load_state_dict`` pre-hook of the root module: it sees the state dict after the model's own upgrades."""
    own = _storages(module)
    for key, value in state_dict.items():
        if isinstance(value, Tensor) and value.numel() > 0 and value.untyped_storage().data_ptr() in own:
            raise _OwnValueKept(key)


def _load_without_init(build: Callable[[], M], state_dict: Mapping[str, Tensor]) -> M | None:
    """The model built with :func:`skip_random_init` and loaded; None if the load would keep a value of its own."""
    with skip_random_init():  # (a load may register modules too, e.g. RoBERTa's checkpoint heads)
        model = build()
        handle = model.register_load_state_dict_pre_hook(_check_replaced)
        try:
            model.load_state_dict(dict(state_dict), strict=True)
        except _OwnValueKept:
            return None
        finally:
            handle.remove()
    return model


def build_and_load(build: Callable[[], M], state_dict: Mapping[str, Tensor], *, random_init: bool = False) -> M:
    """``build()``'s model with ``state_dict`` loaded strictly by the model's ``load_state_dict``.

    The build skips the random initialisation unless the load would keep one of the model's own values (then the
    model is built again normally, so such values are initialised as usual) or ``random_init`` is True (the
    initial weights are drawn as fairseq draws them, then replaced: the random stream after loading is fairseq's).
    """
    if not random_init:
        rng = torch.get_rng_state()
        model = _load_without_init(build, state_dict)
        if model is not None:
            return model
        torch.set_rng_state(rng)  # the normal build below draws what it would have drawn from the start
    model = build()
    model.load_state_dict(dict(state_dict), strict=True)
    return model
