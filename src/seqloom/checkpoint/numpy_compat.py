"""numpy arrays, scalars and dtypes in checkpoints, read without letting the file call numpy freely.

fairseq keeps some training state as numpy values: with ``--eval-bleu`` its validation meters in
``extra_state["metrics"]`` hold BLEU's n-gram counts as arrays. A pickle spells them
``numpy.core.multiarray._reconstruct`` (numpy 1.x) or ``numpy._core.multiarray._reconstruct`` (numpy 2),
plus ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray.scalar``.

Only these names are accepted, and each maps to a guarded function here rather than to numpy's own: an
array is rebuilt empty from the exact class ``ndarray`` (its data then comes from the pickle's own bytes,
so memory is bounded by the file), a scalar needs a real dtype. ``numpy.ndarray`` itself is not handed to
the file (it maps to a marker), so a pickle cannot allocate an array of a size it only declares.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

# numpy's own functions, found through what numpy pickles (no import of the deprecated ``numpy.core``)
_RECONSTRUCT: Callable[..., Any] = np.zeros(0).__reduce__()[0]  # type: ignore[assignment]
_SCALAR: Callable[..., Any] = np.float64(0).__reduce__()[0]  # type: ignore[assignment]

# the places numpy 1.x and numpy 2 give for the same functions
_SPELLINGS = ("numpy.core.multiarray", "numpy._core.multiarray")


class RefusedNumpyValue(pickle.UnpicklingError):
    """A numpy value in a checkpoint is not pickled the way numpy writes it (the message says how)."""


class NdarrayName:
    """What the name ``numpy.ndarray`` stands for in a checkpoint: a marker that only :func:`reconstruct` reads."""

    def __new__(cls, *args: Any) -> NdarrayName:
        raise RefusedNumpyValue("numpy value refused: numpy.ndarray is created directly instead of by _reconstruct")


def reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """numpy's ``_reconstruct``, limited to what numpy itself pickles: an empty plain ``ndarray``."""
    if subtype is not NdarrayName:
        raise RefusedNumpyValue(f"numpy value refused: an array of class {subtype!r} (only numpy.ndarray is accepted)")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape) or math.prod(shape):
        raise RefusedNumpyValue(f"numpy value refused: an array rebuilt with the shape {shape!r} (numpy writes (0,))")
    if not isinstance(dtype_code, bytes):
        raise RefusedNumpyValue("numpy value refused: an array rebuilt with a type code that is not bytes")
    return _RECONSTRUCT(np.ndarray, shape, dtype_code)  # type: ignore[no-any-return]


def scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's ``scalar``: one value of ``dtype`` from its bytes (or, for the object dtype, the value itself)."""
    if not isinstance(dtype, np.dtype):
        raise RefusedNumpyValue(f"numpy value refused: a scalar of {type(dtype).__name__} instead of a dtype")
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RefusedNumpyValue(f"numpy value refused: a {dtype} scalar whose data does not fit it")
    return _SCALAR(dtype, data)


def empty_bytes(*args: Any) -> bytes:
    """``bytes()``, as pickle protocol 2 writes an empty array's data; ``bytes(n)`` (n zero bytes) is refused."""
    if args:
        raise RefusedNumpyValue("numpy value refused: bytes called with arguments (pickle only writes bytes())")
    return b""


def _dtype_classes() -> list[type]:
    """numpy's per-type dtype classes (``numpy.dtypes.Float64DType`` ...): the type of every dtype object."""
    module = getattr(np, "dtypes", None)
    names = getattr(module, "__all__", [])
    return [c for c in (getattr(module, n, None) for n in names) if isinstance(c, type) and issubclass(c, np.dtype)]


def _globals() -> list[Any]:
    found: list[Any] = [(NdarrayName, "numpy.ndarray"), (np.dtype, "numpy.dtype"), (empty_bytes, "builtins.bytes")]
    for where in _SPELLINGS:
        found += [(reconstruct, f"{where}._reconstruct"), (scalar, f"{where}.scalar")]
    for cls in _dtype_classes():
        found.append((cls, f"numpy.dtypes.{cls.__name__}"))
    # BUILD (``__setstate__``) is allowed only on objects whose type is listed: arrays and dtypes need it. The
    # names hold a newline, which a pickle's GLOBAL line cannot, so the file can never ask for these classes.
    found += [(np.ndarray, "seqloom\nbuild-only ndarray"), (np.dtype, "seqloom\nbuild-only dtype")]
    return found


NUMPY_SAFE_GLOBALS: list[Any] = _globals()
