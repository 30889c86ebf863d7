"""Optimizers against straightforward re-implementations of fairseq's update rules."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from seqloom import registry
from seqloom.optim import FAIRSEQ_OPTIMIZER_NAMES, build_optimizer, export_optimizer_state, load_optimizer_state
from seqloom.optim.adafactor import AdafactorConfig
from seqloom.optim.adam import AdamConfig, FairseqAdam
from seqloom.optim.nag import NAGConfig
from seqloom.optim.sgd import AdagradConfig, SGDConfig

SHAPES = [(6, 5), (5,), (3, 4, 2)]
LRS = [1e-3, 2e-3, 5e-4, 5e-4, 1e-3, 3e-3, 1e-4, 1e-3]


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]


def grads(step: int, scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(s, generator=g) * scale for s in SHAPES]


def run(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], scale: float = 1.0) -> None:
    for step, lr in enumerate(LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, grads(step, scale)):
            p.grad = g.clone()
        opt.step()


def fairseq_adam_reference(
    params: list[torch.Tensor], *, betas: tuple[float, float], eps: float, wd: float, scale: float = 1.0
) -> list[torch.Tensor]:
    """fairseq.optim.adam.Adam written out in float64, one parameter at a time."""
    ps = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    b1, b2 = betas
    for step, lr in enumerate(LRS):
        t = step + 1
        for i, g in enumerate(grads(step, scale)):
            g = g.double()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            ps[i] = ps[i] - wd * lr * ps[i]
            ps[i] = ps[i] - step_size * m[i] / (v[i].sqrt() + eps)
    return ps


def test_adam_flags_and_defaults() -> None:
    cfg = AdamConfig()
    assert (cfg.adam_betas, cfg.adam_eps, cfg.weight_decay) == ((0.9, 0.999), 1e-8, 0.0)
    assert registry.OPTIMIZERS.config_cls("adam") is AdamConfig


@pytest.mark.parametrize("kernel", ["fused", "foreach"])
def test_adam_is_fairseqs_decoupled_adam(kernel: str) -> None:
    cfg = AdamConfig(adam_betas=(0.9, 0.98), adam_eps=1e-8, weight_decay=0.01)
    params = make_params()
    ref = fairseq_adam_reference(params, betas=(0.9, 0.98), eps=1e-8, wd=0.01)
    if kernel == "fused":
        opt = build_optimizer("adam", cfg, params, lr=1e-3)
        assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True  # CPU has the fused kernel
    else:
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.01, foreach=True)
    run(opt, params)
    for p, r, start in zip(params, ref, make_params()):
        torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=2e-6)
        assert (p - start).abs().max() > 1e-3  # the parameters really moved


def test_use_old_adam_matches_fairseq_exactly_even_for_tiny_gradients() -> None:
    # with gradients ~1e-9, sqrt(v) ~ eps: only fairseq's eps placement reproduces fairseq
    params, twin = make_params(), make_params()
    ref = fairseq_adam_reference(params, betas=(0.9, 0.98), eps=1e-8, wd=0.0, scale=1e-9)
    old = build_optimizer("adam", AdamConfig(adam_betas=(0.9, 0.98), use_old_adam=True), params, 1e-3)
    assert isinstance(old, FairseqAdam)
    run(old, params, scale=1e-9)
    new = build_optimizer("adam", AdamConfig(adam_betas=(0.9, 0.98)), twin, 1e-3)
    run(new, twin, scale=1e-9)
    start = make_params()
    for p, t, r, s in zip(params, twin, ref, start):
        torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=1e-6)
        moved_ref = (r - s.detach().double()).abs().max()
        moved_torch = (t.detach().double() - s.detach().double()).abs().max()
        # fairseq's eps, added before the bias correction of v, acts like eps / sqrt(1 - beta2^t) and damps
        # early tiny updates more than torch's: the one visible difference, and why --use-old-adam exists
        assert moved_torch > 2 * moved_ref


def test_fp16_adam_stats_is_refused_with_the_flag_name() -> None:
    with pytest.raises(ValueError, match="--fp16-adam-stats"):
        build_optimizer("adam", AdamConfig(fp16_adam_stats=True), make_params(), 1e-3)


def test_adam_resumes_from_fairseqs_optimizer_state(fairseq_fixtures) -> None:
    torch.serialization.add_safe_globals([argparse.Namespace])
    ckpt = torch.load(fairseq_fixtures / "mt/checkpoints/checkpoint_last.pt", map_location="cpu", weights_only=True)
    state = ckpt["last_optimizer_state"]
    params = [torch.nn.Parameter(torch.zeros_like(s["exp_avg"])) for _, s in sorted(state["state"].items())]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    for cfg in (AdamConfig(), AdamConfig(use_old_adam=True)):
        opt = build_optimizer("adam", cfg, params, lr=1.0)
        load_optimizer_state(opt, state)
        group = opt.param_groups[0]
        assert group.get("fused") is (None if cfg.use_old_adam else True)  # the kernel choice survives
        assert group["betas"] == (0.9, 0.98) and group["lr"] == pytest.approx(0.0005773502691896258)
        with torch.no_grad():
            for p in params:
                p.zero_()
        opt.step()
        s0 = state["state"][0]
        m = 0.9 * s0["exp_avg"] + 0.1 * 1e-3
        v = 0.98 * s0["exp_avg_sq"] + 0.02 * 1e-6
        lr = 0.0005773502691896258
        expected = -lr * math.sqrt(1 - 0.98**301) / (1 - 0.9**301) * m / (v.sqrt() + 1e-8)
        torch.testing.assert_close(params[0].detach(), expected, rtol=1e-4, atol=1e-9)
        assert int(opt.state[params[0]]["step"]) == 301


def nag_reference(params: list[torch.Tensor], *, momentum: float, wd: float) -> list[torch.Tensor]:
    ps = [p.detach().double().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ps]
    lr_old = LRS[0]
    for step, lr in enumerate(LRS):
        corr = lr / lr_old
        for i, g in enumerate(grads(step)):
            g = g.double()
            ps[i] = ps[i] * (1 - lr * wd) + momentum * momentum * corr * bufs[i] - (1 + momentum) * lr * g
            bufs[i] = momentum * corr * bufs[i] - lr * g
        lr_old = lr
    return ps


def test_nag_is_fairseqs_formula_not_torchs_nesterov() -> None:
    assert NAGConfig().momentum == 0.99
    params, twin = make_params(), make_params()
    ref = nag_reference(params, momentum=0.9, wd=0.01)
    run(build_optimizer("nag", NAGConfig(momentum=0.9, weight_decay=0.01), params, LRS[0]), params)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=1e-6)
    run(torch.optim.SGD(twin, lr=LRS[0], momentum=0.9, nesterov=True, weight_decay=0.01), twin)
    assert max((p - t).abs().max().item() for p, t in zip(params, twin)) > 1e-4


def test_sgd_and_adagrad_are_torchs_with_fairseqs_flags() -> None:
    assert (SGDConfig().momentum, SGDConfig().weight_decay, AdagradConfig().weight_decay) == (0.0, 0.0, 0.0)
    for name, cfg, twin_opt in (
        (
            "sgd",
            SGDConfig(momentum=0.5, weight_decay=0.1),
            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, weight_decay=0.1),
        ),
        ("adagrad", AdagradConfig(weight_decay=0.1), lambda ps: torch.optim.Adagrad(ps, lr=0.1, weight_decay=0.1)),
    ):
        params, twin = make_params(), make_params()
        run(build_optimizer(name, cfg, params, 0.1), params)
        run(twin_opt(twin), twin)
        for p, t in zip(params, twin):
            torch.testing.assert_close(p, t)
        assert not torch.equal(params[0], make_params()[0])


def adafactor_reference(params: list[torch.Tensor], cfg: AdafactorConfig) -> list[torch.Tensor]:
    """Adafactor per fairseq's algorithm, one parameter at a time, in float64."""
    ps = [p.detach().double().clone() for p in params]
    state: list[dict] = [{} for _ in ps]
    eps1, eps2 = cfg.adafactor_eps
    for step, lr in enumerate(LRS):
        t = step + 1
        for i, g in enumerate(grads(step)):
            g, p, st = g.double(), ps[i], state[i]
            rms_p = (p.pow(2).mean()).sqrt().item()
            rel = min(1e-6 * t if cfg.warmup_init else 1e-2, 1 / math.sqrt(t)) if cfg.relative_step else lr
            lr_t = rel * (max(eps2, rms_p) if cfg.scale_parameter else 1.0)
            b2 = 1 - t**cfg.decay_rate
            sq = g * g + eps1
            if g.dim() >= 2:
                st["r"] = b2 * st.get("r", 0) + (1 - b2) * sq.mean(-1)
                st["c"] = b2 * st.get("c", 0) + (1 - b2) * sq.mean(-2)
                vhat = (st["r"] / st["r"].mean(-1, keepdim=True)).unsqueeze(-1) * st["c"].unsqueeze(-2)
            else:
                st["v"] = vhat = b2 * st.get("v", 0) + (1 - b2) * sq
            u = g / vhat.sqrt()
            u = u / max(1.0, (u.pow(2).mean().sqrt() / cfg.clip_threshold).item()) * lr_t
            if cfg.beta1 is not None:
                st["m"] = u = cfg.beta1 * st.get("m", 0) + (1 - cfg.beta1) * u
            ps[i] = p - cfg.weight_decay * lr_t * p - u
    return ps


@pytest.mark.parametrize(
    "cfg",
    [
        AdafactorConfig(),
        AdafactorConfig(beta1=0.9, weight_decay=0.01, clip_threshold=0.5),
        AdafactorConfig(scale_parameter=True, relative_step=True),
        AdafactorConfig(scale_parameter=True, relative_step=True, warmup_init=True, decay_rate=-0.5),
    ],
)
def test_adafactor_matches_the_reference_algorithm(cfg: AdafactorConfig) -> None:
    params = make_params()
    ref = adafactor_reference(params, cfg)
    run(build_optimizer("adafactor", cfg, params, LRS[0]), params)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(params[1], make_params()[1])


def test_adafactor_factors_matrices_and_keeps_fairseqs_state_keys() -> None:
    params = make_params()
    opt = build_optimizer("adafactor", AdafactorConfig(beta1=0.9), params, 1e-3)
    run(opt, params)
    assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_avg_sq_row", "exp_avg_sq_col", "RMS"}
    assert opt.state[params[0]]["exp_avg_sq_row"].shape == (6,)
    assert opt.state[params[2]]["exp_avg_sq_col"].shape == (3, 2)
    assert set(opt.state[params[1]]) == {"step", "exp_avg", "exp_avg_sq", "RMS"}
    assert opt.param_groups[0]["lr"] == LRS[-1]  # the scheduler's rate is not overwritten


def test_adafactor_warmup_init_needs_relative_step() -> None:
    with pytest.raises(ValueError, match="--warmup-init requires --relative-step"):
        build_optimizer("adafactor", AdafactorConfig(warmup_init=True), make_params(), 1e-3)


def test_unknown_optimizer_names_the_choices() -> None:
    with pytest.raises(KeyError, match="Did you mean 'adam'"):
        build_optimizer("adamm", None, make_params(), 1e-3)


@pytest.mark.parametrize(
    "name,cfg", [("adam", AdamConfig()), ("adafactor", AdafactorConfig(beta1=0.9)), ("nag", NAGConfig())]
)
def test_exported_state_is_fairseqs_form_and_resumes_exactly(name: str, cfg) -> None:
    params, twin = make_params(), make_params()
    opt = build_optimizer(name, cfg, params, 1e-3)
    run(opt, params)
    exported = export_optimizer_state(opt)
    assert FAIRSEQ_OPTIMIZER_NAMES[name].lower().endswith(name)
    assert all(not set(g) & {"fused", "foreach", "capturable", "differentiable"} for g in exported["param_groups"])
    assert all(type(s.get("step", 0)) is int for s in exported["state"].values())
    # a resumed twin continues exactly like the original
    with torch.no_grad():
        for t, p in zip(twin, params):
            t.copy_(p)
    resumed = build_optimizer(name, cfg, twin, 1e-3)
    load_optimizer_state(resumed, exported)
    run(opt, params)
    run(resumed, twin)
    for p, t in zip(params, twin):
        torch.testing.assert_close(p, t, rtol=0, atol=0)


def _fairseq_optimizer_cases() -> list[dict]:
    import gzip
    import json
    from pathlib import Path

    path = Path(__file__).parents[1] / "fixtures" / "optimizers" / "fairseq.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


@pytest.mark.parametrize("case", _fairseq_optimizer_cases(), ids=lambda c: f"{c['name']}-{c['options']}")
def test_adamax_and_adadelta_equal_fairseqs(case: dict) -> None:
    """fairseq's own optimizers ran these 8 steps (tests/fixtures/optimizers): the same parameters after each."""
    params = [torch.nn.Parameter(torch.tensor(p)) for p in case["init"]]
    cfg = registry.OPTIMIZERS.config_cls(case["name"])(**case["options"])
    opt = build_optimizer(case["name"], cfg, params, lr=case["steps"][0]["lr"])
    for i, step in enumerate(case["steps"]):
        for group in opt.param_groups:
            group["lr"] = step["lr"]
        for p, g in zip(params, step["grads"]):
            p.grad = torch.tensor(g)
        opt.step()
        for p, want in zip(params, step["params"]):
            torch.testing.assert_close(p.detach(), torch.tensor(want), rtol=1e-6, atol=1e-7, msg=f"step {i}")
    assert FAIRSEQ_OPTIMIZER_NAMES[case["name"]] in ("FairseqAdamax", "Adadelta")


def test_adamax_state_uses_fairseqs_keys_and_bad_betas_are_named() -> None:
    from seqloom.optim.adamax import AdamaxConfig

    params = make_params()
    opt = build_optimizer("adamax", AdamaxConfig(), params, lr=1e-3)
    run(opt, params)
    assert set(export_optimizer_state(opt)["state"][0]) == {"step", "exp_avg", "exp_inf"}
    with pytest.raises(ValueError, match="--adamax-betas"):
        build_optimizer("adamax", AdamaxConfig(adamax_betas="0.9"), make_params(), lr=1e-3)


def deepspeed_cpu_adam_reference(params: list[torch.Tensor], *, betas: tuple[float, float], eps: float, wd: float,
                                 scale: float = 1.0) -> list[torch.Tensor]:  # fmt: skip
    """DeepSpeed's CPU Adam in AdamW mode (what fairseq's cpu_adam runs) in float64: decoupled weight decay,
    then ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` (eps after the bias correction)."""
    ps = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    b1, b2 = betas
    for step, lr in enumerate(LRS):
        t = step + 1
        for i, g in enumerate(grads(step, scale)):
            g = g.double()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            ps[i] = ps[i] * (1 - lr * wd)
            ps[i] = ps[i] - lr / (1 - b1**t) * m[i] / (v[i].sqrt() / math.sqrt(1 - b2**t) + eps)
    return ps


def test_cpu_adam_is_deepspeeds_adamw_update_and_keeps_fairseqs_name() -> None:
    """With tiny gradients the eps placement tells DeepSpeed's update (cpu_adam) from fairseq's adam."""
    from seqloom.optim.cpu_adam import CPUAdamConfig

    cfg = CPUAdamConfig(adam_betas=(0.9, 0.98), weight_decay=0.01)
    for scale in (1.0, 1e-9):
        params = make_params()
        opt = build_optimizer("cpu_adam", cfg, params, lr=1e-3)
        run(opt, params, scale=scale)
        ref = deepspeed_cpu_adam_reference(make_params(), betas=(0.9, 0.98), eps=1e-8, wd=0.01, scale=scale)
        for p, r in zip(params, ref):
            torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=2e-6)
    fairseq = fairseq_adam_reference(make_params(), betas=(0.9, 0.98), eps=1e-8, wd=0.01, scale=1e-9)
    assert max(float((f - r).abs().max()) for f, r in zip(fairseq, ref)) > 1e-4  # the check above tells them apart
    assert FAIRSEQ_OPTIMIZER_NAMES["cpu_adam"] == "FairseqCPUAdam"
    with pytest.raises(ValueError, match="--fp16-adam-stats"):
        build_optimizer("cpu_adam", CPUAdamConfig(fp16_adam_stats=True), make_params(), lr=1e-3)


def apex_lamb_reference(params: list[torch.Tensor], *, betas: tuple[float, float], eps: float, wd: float,
                        scale: float, adam_w: bool = True, nvlamb: bool = False) -> list[torch.Tensor]:  # fmt: skip
    """apex's FusedLAMB (multi_tensor_lamb.cu's two stages) written out in float64, max_grad_norm 1."""
    ps = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    b1, b2 = betas
    for step, lr in enumerate(LRS):
        t = step + 1
        gs = [g.double() for g in grads(step, scale)]
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in gs))
        divisor = norm / 1.0 if norm > 1.0 else 1.0
        for i, g in enumerate(gs):
            g = g / divisor
            if not adam_w:
                g = g + wd * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps)
            if adam_w:
                update = update + wd * ps[i]
            ratio = 1.0
            if nvlamb or wd != 0:
                p_norm, u_norm = float(ps[i].norm()), float(update.norm())
                ratio = p_norm / u_norm if p_norm != 0 and u_norm != 0 else 1.0
            ps[i] = ps[i] - lr * ratio * update
    return ps


def lamb_params() -> list[torch.nn.Parameter]:
    params = make_params()
    with torch.no_grad():
        params[1].zero_()  # a zero tensor: its trust ratio falls back to 1 at the first step
    return params


@pytest.mark.parametrize("wd, scale", [(0.0, 1.0), (0.0, 0.01), (0.01, 1.0), (0.01, 0.01)])
def test_lamb_is_apex_fused_lamb_with_fairseqs_options(wd: float, scale: float) -> None:
    """fairseq's lamb = apex FusedLAMB(lr, betas, eps, weight_decay): a global clip at norm 1 (scale 1 clips,
    0.01 does not) and the trust ratio only with weight decay."""
    from seqloom.optim.lamb import Lamb, LambConfig

    params = lamb_params()
    opt = build_optimizer("lamb", LambConfig(lamb_betas=(0.9, 0.98), lamb_eps=1e-6, weight_decay=wd), params, lr=1e-3)
    assert isinstance(opt, Lamb)
    run(opt, params, scale=scale)
    ref = apex_lamb_reference(lamb_params(), betas=(0.9, 0.98), eps=1e-6, wd=wd, scale=scale)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=2e-6)
    # the reference tells the variants apart: clipping, and the trust ratio
    adam = fairseq_adam_reference(lamb_params(), betas=(0.9, 0.98), eps=1e-6, wd=0.0, scale=scale)
    differs = max(float((a - r).abs().max()) for a, r in zip(adam, ref)) > 1e-4
    assert differs == (scale == 1.0 or wd != 0)
    assert opt.param_groups[0]["step"] == len(LRS)
    assert set(opt.state[params[0]]) == {"exp_avg", "exp_avg_sq"}  # apex's names, step in the group
    assert FAIRSEQ_OPTIMIZER_NAMES["lamb"] == "FairseqLAMB"


def test_lamb_l2_mode_and_nvlamb_match_apex() -> None:
    from seqloom.optim.lamb import Lamb

    for adam_w, nvlamb in ((False, False), (True, True)):
        params = lamb_params()
        opt = Lamb(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, adam_w_mode=adam_w,
                   use_nvlamb=nvlamb)  # fmt: skip
        run(opt, params, scale=0.3)
        ref = apex_lamb_reference(lamb_params(), betas=(0.9, 0.999), eps=1e-8, wd=0.01, scale=0.3, adam_w=adam_w,
                                  nvlamb=nvlamb)  # fmt: skip
        for p, r in zip(params, ref):
            torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=2e-6)


def test_lamb_resumes_from_its_exported_state_and_keeps_low_precision_moments() -> None:
    from seqloom.optim.lamb import Lamb, LambConfig

    cfg = LambConfig(weight_decay=0.01)
    whole = lamb_params()
    run(build_optimizer("lamb", cfg, whole, lr=1e-3), whole)
    first = lamb_params()
    opt = build_optimizer("lamb", cfg, first, lr=1e-3)
    for step, lr in enumerate(LRS[:4]):
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(first, grads(step)):
            p.grad = g.clone()
        opt.step()
    saved = export_optimizer_state(opt)
    assert saved["param_groups"][0]["step"] == 4
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    opt = build_optimizer("lamb", cfg, resumed, lr=1e-3)
    load_optimizer_state(opt, saved)
    for step, lr in list(enumerate(LRS))[4:]:
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(resumed, grads(step)):
            p.grad = g.clone()
        opt.step()
    for a, b in zip(resumed, whole):
        assert torch.equal(a, b)

    # float16 weights (small, so that the steps show at their precision): moments in float16, math in float32
    start = [p.detach() * 0.01 for p in make_params()]
    half = [torch.nn.Parameter(p.half()) for p in start]
    opt = Lamb(half, lr=1e-3, weight_decay=0.0)
    for step in range(len(LRS)):
        for group in opt.param_groups:
            group["lr"] = LRS[step]
        for p, g in zip(half, grads(step)):
            p.grad = g.half()
        opt.step()
    ref = apex_lamb_reference([p.half() for p in start], betas=(0.9, 0.999), eps=1e-6, wd=0.0, scale=1.0)
    assert opt.state[half[0]]["exp_avg"].dtype == torch.float16
    for p, r, s in zip(half, ref, start):
        assert float((r - s.half().double()).abs().max()) > 5e-3  # the weights moved
        torch.testing.assert_close(p.detach().double(), r, rtol=0, atol=1e-4)
