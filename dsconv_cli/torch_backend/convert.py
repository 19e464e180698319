"""Conv2d -> depthwise separable surgery: weight initialisation from the original weights
(per-channel SVD), verification of the output, the files to write, and ``apply_plan``."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BudgetError, InputError
from ..names import short_name
from ..plan import (
    ConvFacts,
    Decision,
    PlanOptions,
    decide,
    eligibility,
    plan_document,
    plan_path,
    ranks_for_budget,
    validate_plan,
)
from ..results import ConvertLayer, ConvertTotals, Verification
from .loading import Loaded, forward_once

__all__ = [
    "Conversion",
    "ConvertOptions",
    "apply_plan",
    "convert_model",
    "serialise",
]


# ------------------------------------------------------------------------- surgery

def _conv_places(model: nn.Module) -> dict[int, tuple[nn.Conv2d, list[str]]]:
    """Every distinct Conv2d with all the names it is reachable by (shared modules)."""
    out: dict[int, tuple[nn.Conv2d, list[str]]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, nn.Conv2d):
            out.setdefault(id(m), (m, []))[1].append(name)
    return out


def conv_facts(conv: nn.Conv2d, names: list[str], shape: tuple[int, ...] | None,
               energy: tuple[float, ...] = ()) -> ConvFacts:
    """What the planner needs to know of one Conv2d (and whether it is a plain one)."""
    def p(v: Any) -> tuple[int, int]:
        return (int(v[0]), int(v[1]))

    padding = conv.padding if isinstance(conv.padding, str) else p(conv.padding)
    cls = type(conv)
    custom = None
    if any(getattr(cls, f) is not getattr(nn.Conv2d, f) for f in ("forward", "_conv_forward")):
        custom = f"{cls.__module__}.{cls.__qualname__}"
    return ConvFacts(names[0], conv.in_channels, conv.out_channels, p(conv.kernel_size),
                     p(conv.stride), padding, p(conv.dilation), conv.groups,
                     conv.bias is not None, conv.padding_mode, shape, energy, tuple(names[1:]),
                     custom)


def _svd(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per input channel c, the SVD of W[:, c] as a (Cout x Kh*Kw) matrix, in float64.

    The batch of small SVDs runs on one thread: LAPACK's threading over many tiny matrices
    oversubscribes the cores (7 s on 2 threads vs 0.05 s on one, measured here)."""
    w = conv.weight.detach().to("cpu", torch.float64)
    cout, cin_g, kh, kw = w.shape
    g = conv.groups
    # input channel c of group gi feeds that group's cout/g outputs: its slice is
    # (cout/g x Kh*Kw); for groups=1 that is all outputs
    a = (w.reshape(g, cout // g, cin_g, kh * kw).permute(0, 2, 1, 3)
         .reshape(g * cin_g, cout // g, kh * kw))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
    finally:
        torch.set_num_threads(before)
    return u, s, vh


def _energy(s: torch.Tensor) -> tuple[float, ...]:
    e = (s**2).sum(dim=0)
    total = float(e.sum())
    if total == 0:
        return tuple(1.0 for _ in range(len(e)))
    return tuple(float(v) for v in torch.cumsum(e, 0) / total)


def make_pair(conv: nn.Conv2d, m: int, init: str,
              svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> nn.Sequential:
    """``Sequential(depthwise, pointwise)`` replacing ``conv``: padding, padding mode,
    dilation and stride on the depthwise conv; the bias on the pointwise; same device,
    dtype and train/eval mode."""
    w = conv.weight
    cin, cout = conv.in_channels, conv.out_channels
    kh, kw = conv.kernel_size
    dev, dt = w.device, w.dtype
    attrs: dict[str, Any] = {"kernel_size": conv.kernel_size, "stride": conv.stride,
                             "padding": conv.padding, "dilation": conv.dilation,
                             "padding_mode": conv.padding_mode}
    g = conv.groups
    dw = nn.Conv2d(cin, cin * m, groups=cin, bias=False, device=dev, dtype=dt, **attrs)
    pw = nn.Conv2d(cin * m, cout, 1, groups=g, bias=conv.bias is not None, device=dev,
                   dtype=dt)
    if init == "svd":
        u, s, vh = svd if svd is not None else _svd(conv)
        k = min(m, s.shape[1])
        d = torch.zeros(cin, m, kh * kw, dtype=torch.float64)
        d[:, :k] = vh[:, :k, :]
        # u: (cin, cout/g, r) -> pointwise (g, cout/g, cin/g, m)
        pmat = torch.zeros(g, cout // g, cin // g, m, dtype=torch.float64)
        pmat[..., :k] = (u[:, :, :k] * s[:, None, :k]).reshape(
            g, cin // g, cout // g, k).permute(0, 2, 1, 3)
        with torch.no_grad():
            dw.weight.copy_(d.reshape(cin * m, 1, kh, kw))
            pw.weight.copy_(pmat.reshape(cout, (cin // g) * m, 1, 1))
    if conv.bias is not None:
        with torch.no_grad():
            assert pw.bias is not None
            pw.bias.copy_(conv.bias)
    pair = nn.Sequential(dw, pw)
    pair.train(conv.training)
    return pair


def effective_weight_error(conv: nn.Conv2d, pair: nn.Sequential) -> float:
    """||W' - W|| / ||W||, W' the dense kernel the pair computes (from its real weights)."""
    dw, pw = pair[0], pair[1]
    assert isinstance(dw, nn.Conv2d) and isinstance(pw, nn.Conv2d)
    cin, cout, g = conv.in_channels, conv.out_channels, conv.groups
    m = dw.out_channels // cin
    d = dw.weight.detach().to("cpu", torch.float64).reshape(g, cin // g, m, -1)
    p = pw.weight.detach().to("cpu", torch.float64).reshape(g, cout // g, cin // g, m)
    eff = torch.einsum("goim,gimk->goik", p, d)
    w = conv.weight.detach().to("cpu", torch.float64).reshape(g, cout // g, cin // g, -1)
    norm = float(w.norm())
    return float((eff - w).norm()) / norm if norm else 0.0


def _replace(model: nn.Module, replacements: dict[int, nn.Module]) -> None:
    """Put each replacement everywhere its conv was (a shared conv stays shared)."""
    places = [(parent, name, child) for parent in model.modules()
              for name, child in parent._modules.items()
              if child is not None and id(child) in replacements]
    for parent, name, child in places:
        setattr(parent, name, replacements[id(child)])


def _input_shapes(model: nn.Module, shape: tuple[int, ...], seed: int,
                  inputs: dict[int, torch.Tensor] | None = None,
                  calls: dict[int, int] | None = None
                  ) -> tuple[dict[int, tuple[int, ...]], torch.Tensor, torch.Tensor]:
    """Shapes reaching each conv, the input used and the output, from one eval forward;
    with ``inputs``, each conv's first input too (for the per-layer check); with ``calls``,
    how many times each conv ran."""
    shapes: dict[int, tuple[int, ...]] = {}

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        shapes.setdefault(id(mod), tuple(args[0].shape))
        if calls is not None:
            calls[id(mod)] = calls.get(id(mod), 0) + 1
        if inputs is not None and id(mod) not in inputs:
            inputs[id(mod)] = args[0].detach().clone()

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    try:
        x, y = forward_once(model, shape, seed)
    finally:
        for h in hooks:
            h.remove()
    return shapes, x, y


def _budget_plan(o: ConvertOptions, plan: PlanOptions, facts: list[ConvFacts],
                 model_macs: int | None) -> PlanOptions:
    """Per-layer multipliers that fit ``--target-macs`` (see ``plan.ranks_for_budget``)."""
    if model_macs is None or o.target_macs is None:
        raise InputError("--target-macs needs the model's MACs: give --input-shape or "
                         "--calibration-data")
    target = int(o.target_macs * model_macs) if o.target_macs <= 1 else int(o.target_macs)
    eligible = [f for f in facts if eligibility(f, plan) is None and f.input_shape]
    try:
        budget = ranks_for_budget(eligible, model_macs, target, allow_larger=plan.allow_larger)
    except ValueError as e:
        why = [f"{f.name}: {eligibility(f, plan)}" for f in facts[:3]] if not eligible else []
        detail = f" ({'; '.join(why)}{' ...' if len(facts) > 3 else ''})" if why else ""
        raise BudgetError(f"--target-macs {o.target_macs:g}: {e}{detail}") from None
    return replace(plan, ranks=tuple(sorted(budget.ranks.items())),
                   notes=tuple(sorted(budget.notes.items())))


def _layer_check(conv: nn.Conv2d, pair: nn.Module, x: torch.Tensor | None) -> str | None:
    """The pair against the original layer on the input that reached it in the forward
    pass: a different output shape (or a failure) keeps the original."""
    if x is None:
        return None
    modes = conv.training, pair.training
    conv.eval()
    pair.eval()
    try:
        with torch.no_grad():
            y0, y1 = conv(x), pair(x)
    except Exception as e:  # the DS form cannot take what the layer takes
        return f"the DS form fails on this layer's input ({type(e).__name__}); kept the original"
    finally:
        conv.train(modes[0])
        pair.train(modes[1])
    if y0.shape != y1.shape:
        return (f"the DS form changes the output shape ({tuple(y0.shape)} -> "
                f"{tuple(y1.shape)}); kept the original")
    return None


Read = tuple[int, nn.Conv2d, list[str], ConvFacts, Any]


def _read(model: nn.Module, plan: PlanOptions, shapes: dict[int, tuple[int, ...]]
          ) -> list[Read]:
    """Every distinct Conv2d's facts; a candidate's spectrum (svd init) and a check that its
    weights are finite."""
    read = []
    for key, (conv, names) in _conv_places(model).items():
        facts = conv_facts(conv, names, shapes.get(key))
        svd = None
        if eligibility(facts, plan) is None and not bool(
                torch.isfinite(conv.weight.detach()).all()):
            raise InputError(f"layer {names[0]}: holds non-finite weights (NaN or inf); "
                             "fix the model or --exclude the layer")
        if plan.init == "svd" and eligibility(facts, plan) is None:
            svd = _svd(conv)  # only candidates pay for the spectrum
            facts = replace(facts, energy_by_rank=_energy(svd[1]))
        read.append((key, conv, names, facts, svd))
    return read


def candidates(model: nn.Module, plan: PlanOptions, input_shape: tuple[int, ...],
               seed: int = 0) -> list[tuple[ConvFacts, int]]:
    """The eligible Conv2d layers (the facts a budget needs: the input shape each really
    sees, the spectrum) and how many times each runs per forward, from one eval forward."""
    calls: dict[int, int] = {}
    shapes, _, _ = _input_shapes(model, input_shape, seed, calls=calls)
    return [(facts, calls.get(key, 0)) for key, _, _, facts, _ in _read(model, plan, shapes)
            if eligibility(facts, plan) is None]


@dataclass(frozen=True)
class ConvertOptions:
    plan: PlanOptions = PlanOptions()
    input_shape: tuple[int, ...] | None = None
    seed: int = 0
    #: --target-macs: a fraction of the model's MACs (<= 1) or an absolute count
    target_macs: float | None = None


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_model` did: the decisions (for the plan) and their report."""

    decisions: list[Decision]
    layers: list[ConvertLayer]
    totals: ConvertTotals
    verification: Verification
    convert_s: float
    verify_s: float


def convert_model(loaded: Loaded, o: ConvertOptions) -> Conversion:
    """Convert ``loaded.model`` in place. Returns the per-layer decisions and their
    report (per-layer rows, totals, verification, timings)."""
    model = loaded.model
    t0 = time.perf_counter()
    shapes: dict[int, tuple[int, ...]] = {}
    x = y_before = None
    macs_before = None
    conv_inputs: dict[int, torch.Tensor] = {}
    if o.input_shape is not None:
        from .counting import check_forward_fits

        macs_before = check_forward_fits(model, o.input_shape).macs
        shapes, x, y_before = _input_shapes(model, o.input_shape, o.seed, conv_inputs)
    decisions: list[Decision] = []
    replacements: dict[int, nn.Module] = {}
    errors: dict[str, float] = {}
    read = _read(model, o.plan, shapes)
    plan = o.plan
    if o.target_macs is not None:
        plan = _budget_plan(o, plan, [f for _, _, _, f, _ in read], macs_before)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(o.seed)
        for key, conv, _names, facts, svd in read:
            d = decide(facts, plan)
            decisions.append(d)
            if d.convert:
                assert d.rank is not None
                pair = make_pair(conv, d.rank, o.plan.init, svd)
                problem = _layer_check(conv, pair, conv_inputs.get(key))
                if problem is not None:  # keep the original layer, and say why
                    d = replace(d, convert=False, reason=problem)
                    decisions[-1] = d
                else:
                    replacements[key] = pair
                    errors[d.facts.name] = effective_weight_error(conv, pair)
    _replace(model, replacements)
    t_convert = time.perf_counter() - t0
    t1 = time.perf_counter()
    verification = Verification(False, note="output not verified: no --input-shape")
    if o.input_shape is not None and x is not None and y_before is not None:
        _, y_after = forward_once(model, o.input_shape, o.seed, x)
        verification = _verification(y_before, y_after, o.input_shape, o.seed)
    totals = _totals(decisions, model)
    if macs_before is not None and o.input_shape is not None:
        from .counting import count_model

        # the whole model, counted like compare --model: linear and attention included
        totals = replace(totals, model_macs_before=macs_before,
                         model_macs_after=count_model(model, o.input_shape).macs)
    return Conversion(decisions, [_row(d, errors.get(d.facts.name)) for d in decisions],
                      totals, verification, round(t_convert, 4),
                      round(time.perf_counter() - t1, 4))


def _verification(y_before: torch.Tensor, y_after: torch.Tensor, shape: tuple[int, ...],
                  seed: int) -> Verification:
    diff = (y_after.double() - y_before.double())
    ref = float(y_before.double().norm())
    return Verification(True, input_shape=list(shape), seed=seed, mode="eval",
                        max_abs_diff=float(diff.abs().max()) if diff.numel() else 0.0,
                        rel_diff=float(diff.norm()) / ref if ref else float(diff.norm()))


def output_check(original: nn.Module, converted: nn.Module, shape: tuple[int, ...],
                 seed: int) -> Verification:
    """The output check again, after calibration changed the converted model."""
    x, y0 = forward_once(original, shape, seed)
    _, y1 = forward_once(converted, shape, seed, x)
    return _verification(y0, y1, shape, seed)


def _row(d: Decision, actual_error: float | None) -> ConvertLayer:
    f = d.facts
    return ConvertLayer(
        name=f.name, aliases=list(f.aliases),
        input_shape=list(f.input_shape) if f.input_shape else None,
        in_channels=f.in_channels, out_channels=f.out_channels,
        kernel=list(f.kernel), stride=list(f.stride), dilation=list(f.dilation),
        groups=f.groups, params_before=d.params_before, params_after=d.params_after,
        macs_before=d.macs_before, macs_after=d.macs_after,
        rank=d.rank, max_rank=f.max_rank, energy=d.energy,
        weight_error=actual_error if actual_error is not None else d.weight_error,
        status="converted" if d.convert else "skipped", reason=d.reason,
        note=d.note,
    )


def _totals(decisions: list[Decision], model: nn.Module) -> ConvertTotals:
    conv = [d for d in decisions if d.convert]
    params_after_model = sum(p.numel() for p in model.parameters())
    saved = sum(d.params_before - (d.params_after or 0) for d in conv)
    macs_known = all(d.macs_before is not None for d in decisions)
    return ConvertTotals(
        layers=len(decisions), converted=len(conv), skipped=len(decisions) - len(conv),
        model_params_before=params_after_model + saved,
        model_params_after=params_after_model,
        conv_params_before=sum(d.params_before for d in decisions),
        conv_params_after=sum((d.params_after if d.convert else d.params_before) or 0
                              for d in decisions),
        conv_macs_before=sum(d.macs_before or 0 for d in decisions) if macs_known else None,
        conv_macs_after=sum(((d.macs_after if d.convert else d.macs_before) or 0)
                            for d in decisions) if macs_known else None,
    )


# ------------------------------------------------------------------------- writing

def serialise(loaded: Loaded, decisions: list[Decision], output: Path,
              calibrated: frozenset[str] = frozenset(), arch: dict[str, Any] | None = None
              ) -> list[tuple[Path, bytes | str]]:
    """The files to write: the model (or state_dict plus its plan beside it; a model
    loaded with a plan gets one plan rebuilding both conversions)."""
    buf = io.BytesIO()
    if loaded.kind == "module":
        torch.save(loaded.model, buf)
        return [(output, buf.getvalue())]
    torch.save(loaded.model.state_dict(), buf)
    plan = plan_document(decisions, loaded.source, calibrated, arch, loaded.plan)
    return [(output, buf.getvalue()),
            (plan_path(output), json.dumps(plan, indent=2) + "\n")]


def _read_plan_file(path: Path) -> dict[str, Any]:
    """A ``.plan.json`` for :func:`apply_plan`: read with the command line's checks; every
    problem a one-line ``ValueError`` naming the file (made safe to show)."""
    from ..inputs import read_text

    where = short_name(str(path), 200)
    try:
        doc = json.loads(read_text(path, None, "plan"))
        validate_plan(doc)
    except InputError as e:
        raise ValueError(short_name(str(e), 300)) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not a JSON plan ({e})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply to be a plan") from None
    except ValueError as e:
        raise ValueError(f"{where}: {short_name(str(e), 300)}") from None
    return doc


def apply_plan(model: nn.Module, plan: Mapping[str, Any] | str | Path) -> nn.Module:
    """Rebuild the depthwise separable structure a ``.plan.json`` describes, in place, so
    the converted state_dict loads: ``apply_plan(arch(), plan); model.load_state_dict(sd)``.
    The plan is checked whole before anything is built (``ValueError``, one line, naming
    the file); a file is read as the command line reads one (a regular file of sane size:
    a FIFO or ``/dev/zero`` is refused, never read)."""
    if not isinstance(plan, (Mapping, str, Path)):
        raise TypeError(f"apply_plan: the plan is a dict or a path, not {type(plan).__name__}")
    doc = dict(plan) if isinstance(plan, Mapping) else _read_plan_file(Path(plan))
    replacements: dict[int, nn.Module] = {}
    ranks: dict[int, tuple[nn.Conv2d, int]] = {}
    for entry in validate_plan(doc):
        name = entry["name"]
        try:
            conv = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"plan layer {short_name(name)!r}: the model has no such "
                             "module") from None
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"plan layer {short_name(name)!r} is {type(conv).__name__}, "
                             "not Conv2d")
        if (conv.in_channels, conv.out_channels, list(conv.kernel_size)) != (
                entry["in_channels"], entry["out_channels"], entry["kernel"]):
            raise ValueError(f"plan layer {name!r} does not match the model's conv")
        m = entry["depth_multiplier"]
        full = min(conv.out_channels // conv.groups, conv.kernel_size[0] * conv.kernel_size[1])
        if m > full:
            raise ValueError(f"plan layer {name!r}: depth_multiplier {m} is above the "
                             f"conv's rank {full} (dsconv never writes that)")
        ranks[id(conv)] = (conv, m)
    for key, (conv, m) in ranks.items():
        replacements[key] = make_pair(conv, m, "random")
    _replace(model, replacements)
    return model
