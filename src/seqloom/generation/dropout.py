"""``--retain-dropout`` and ``--retain-dropout-modules``: dropout during generation, for some modules or all.

fairseq names each dropout by the class of the module that owns it; ``--retain-dropout-modules`` lists those
names. Ours are mapped to fairseq's (``TransformerEncoderLayerBase``, ``TransformerDecoderLayerBase``,
``MultiheadAttention``, ``TransformerEncoder``, ``TransformerDecoder``); our own class names work too. A listed
module drops out during generation; the rest of the model stays in eval mode.
"""

from __future__ import annotations

import ast

from seqloom.generation.decoding_model import ModuleTree

# our module classes -> the names fairseq 0.12's modules give their dropouts
FAIRSEQ_NAMES = {
    "TransformerEncoderLayer": ("TransformerEncoderLayerBase", "TransformerEncoderLayer"),
    "TransformerDecoderLayer": ("TransformerDecoderLayerBase", "TransformerDecoderLayer"),
    "TransformerEncoder": ("TransformerEncoder", "TransformerEncoderBase"),
    "TransformerDecoder": ("TransformerDecoder", "TransformerDecoderBase"),
    "MultiheadAttention": ("MultiheadAttention",),
}


def parse_modules(value: str | None) -> list[str] | None:
    """``'["A", "B"]'``, ``"A,B"`` or ``"A B"`` -> ``["A", "B"]`` (None: every module)."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if text.startswith("["):
        try:
            names = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"--retain-dropout-modules: cannot read {text!r} as a list of module names") from None
        return [str(n) for n in names]
    return [n for n in text.replace(",", " ").split() if n]


def apply_retain_dropout(model: ModuleTree, retain: bool, modules: str | None) -> None:
    """Eval mode, except the dropout ``--retain-dropout`` keeps (in the modules named, or everywhere).

    LayerDrop stays off either way: fairseq keeps the model in eval mode and only lets its dropout modules
    apply during inference, and its LayerDrop follows the eval mode."""
    names = parse_modules(modules)
    for module in model.modules():
        if hasattr(module, "retains_dropout"):
            setattr(module, "retains_dropout", retain)  # noqa: B010 (a plain attribute of the layer stacks)
    if not retain:
        model.eval()
        return
    if names is None:  # every dropout, as fairseq's --retain-dropout alone
        model.train(True)
        return
    model.eval()
    known = {n for aliases in FAIRSEQ_NAMES.values() for n in aliases}
    unknown = [n for n in names if n not in known and not any(type(m).__name__ == n for m in model.modules())]
    if unknown:
        raise ValueError(
            f"--retain-dropout-modules: no module of this model is named {', '.join(unknown)}; names: "
            f"{', '.join(sorted(known))}"
        )
    for module in model.modules():
        cls = type(module).__name__
        if cls in names or any(alias in names for alias in FAIRSEQ_NAMES.get(cls, ())):
            module.training = True  # this module's own dropout only; its children keep their mode


def retained(model: ModuleTree) -> list[str]:
    """The class names of the modules that drop out (for tests and logs)."""
    return sorted({type(m).__name__ for m in model.modules() if m.training})
