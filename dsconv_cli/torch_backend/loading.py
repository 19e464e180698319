"""Safe model loading: ``weights_only`` unless the user trusts the file, state_dicts and
checkpoints rebuilt with ``--arch``, every failure an ``InputError`` naming the file."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BackendError, InputError, describe, user_code
from ..inputs import check_input, read_text
from ..options import parse_input_shape  # re-exported: its home is the torch-free options
from ..plan import plan_path, validate_plan
from ..presets import PRESETS, get_preset
from . import forward_error, is_oom
from .build import build_preset

__all__ = ["Loaded", "build_arch", "build_arch_meta", "first_tensor", "forward_once",
           "load_model", "parse_input_shape", "read_plan", "resolve_arch"]

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")
PREFIXES = ("module.", "model.")


@dataclass
class Loaded:
    model: nn.Module
    kind: str  # "module" | "state_dict"
    source: str
    notes: list[str] = field(default_factory=list)
    #: the ``.plan.json`` applied to build it (a converted state_dict), as read
    plan: dict[str, Any] | None = None


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _check_file(path: Path) -> None:
    check_input(path, None, "model")  # a FIFO or /dev/zero: one line, never read
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    if not head:
        raise InputError(f"{path}: empty file")
    if zipfile.is_zipfile(path):
        try:
            names = zipfile.ZipFile(path).namelist()
        except (zipfile.BadZipFile, OSError):
            return
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            raise InputError(f"{path}: a TorchScript archive; dsconv converts eager nn.Module "
                             "models", hint="pass the original model or its state_dict")


def _torch_load(path: Path, map_location: str, trust_pickle: bool,
                warn: Callable[[str], None]) -> Any:
    location = _map_location(map_location)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes etc.: the outcome is what counts
            return torch.load(path, map_location=location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        blocked = re.search(r"GLOBAL (\S+) whose module (\S+) is blocked", msg)
        if blocked:  # torch refuses it outright: never unpickled, trusted or not
            raise InputError(f"{path}: names {blocked.group(1)}, a global torch blocks as "
                             f"unsafe (module {blocked.group(2)}); dsconv never loads it, "
                             "with or without --trust-pickle") from None
        if "Unsupported global" not in msg:  # garbage, not a pickled object
            if (alien := _alien(path)) is not None:
                raise alien from None
            detail = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln),
                          torch_detail(msg))
            raise InputError(f"{path}: not a torch file ({detail})") from None
        if not trust_pickle:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
            what = (f"{found.group(1)}, outside torch's weights_only allow-list" if found
                    else "pickled Python objects")
            raise InputError(
                f"{path}: holds {what} (a whole nn.Module, or other objects); loading it runs "
                "code from the file", hint="--trust-pickle loads it, if you trust the file; "
                "or save a state_dict and pass --arch") from None
    except Exception as e:  # whatever a malformed file makes the unpickler raise
        raise _load_error(path, e) from None
    warn(f"--trust-pickle: unpickling {path} runs code from the file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=location, weights_only=False)
    except (Exception, SystemExit) as e:  # the file's own code failed: still the user's input
        if is_oom(e):
            raise _load_error(path, e) from None
        raise InputError(f"{path}: unpickling failed: {describe(e)}") from e


def _map_location(text: str) -> torch.device:
    try:
        location = torch.device(text)
    except RuntimeError:
        raise InputError(f"--map-location {text!r}: not a torch device "
                         "(e.g. cpu, cuda, cuda:1)") from None
    if location.type == "meta":
        raise InputError(f"--map-location {text!r}: meta tensors hold no weights to convert "
                         "or time", hint="use cpu")
    if location.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--map-location {text!r}: CUDA is not available on this machine",
                         hint="use cpu")
    return location


def _load_error(path: Path, e: BaseException) -> Exception:
    """What a failed ``torch.load`` means: memory (the environment, exit 1), or a file
    that is not a complete torch file (the input, exit 2)."""
    first = torch_detail(str(e)) or type(e).__name__
    if "legacy .tar format" in str(e):
        return InputError(f"{path}: not a torch file (neither a zip archive nor a pickle "
                          "torch can read)")
    if is_oom(e):
        return BackendError(f"{path}: out of memory while loading it: {first}")
    if isinstance(e, (EOFError, zipfile.BadZipFile)) or "central directory" in first or (
            "failed finding" in first) or "truncated" in first.lower():
        return InputError(f"{path}: truncated or corrupt torch file: {first}")
    alien = _alien(path)
    return alien or InputError(f"{path}: not a readable torch file: {type(e).__name__}: "
                               f"{first}")


def _alien(path: Path) -> InputError | None:
    """The error for a file that starts like neither a zip archive (``torch.save``) nor a
    pickle (a text file, say), naming its first bytes; None otherwise."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None
    return InputError(f"{path}: not a torch file: it starts with {head!r}, neither a zip "
                      "archive (torch.save) nor a pickle")


#: sentences of torch's load errors that advise ``weights_only=False``: never repeated
_UNSAFE_ADVICE = ("weights_only", "re-running", "arbitrary code", "trusted source",
                  "check the documentation", "in pytorch 2.6")


def torch_detail(msg: str) -> str:
    """A torch load error's first line without its advice to load unsafely (dsconv never
    nudges toward ``weights_only=False``)."""
    for line in msg.splitlines():
        kept = [s for s in re.split(r"(?<=\.)\s+", line.strip())
                if s and not any(a in s.lower() for a in _UNSAFE_ADVICE)]
        if kept:
            return " ".join(kept)
    return ""


def build_arch_meta(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    """The architecture without its weights: built on the meta device (no memory, no
    arithmetic). A constructor that computes with tensors cannot run on meta: it is built
    normally and moved to meta."""
    try:
        with torch.device("meta"):
            return build_arch(spec, kwargs)
    except InputError:
        return build_arch(spec, kwargs).to("meta")


def build_arch(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    """``--arch``: a preset name, ``package.module:callable`` or ``file.py:callable``."""
    if spec in PRESETS:
        try:
            return build_preset(get_preset(spec, **kwargs))
        except TypeError as e:
            raise InputError(f"--arch-kwargs for preset {spec}: {e} (width, resolution, "
                             "classes)") from None
    if ":" not in spec:
        raise InputError(f"--arch {spec!r}: expected package.module:callable, "
                         f"path/file.py:callable or a preset ({', '.join(PRESETS)})")
    fn = resolve_arch(spec)
    with user_code(f"--arch {spec!r}: calling it failed"):  # never decides the exit code
        model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise InputError(f"--arch {spec!r}: returned {type(model).__name__}, not an nn.Module")
    return model


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """The current folder importable for one import, as with ``python -m``; ``sys.path``
    is restored afterwards."""
    added = "" not in sys.path and "." not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove("")


def resolve_arch(spec: str) -> Callable[..., Any]:
    """Import ``package.module:callable`` or ``file.py:callable`` and check it is an
    ``nn.Module`` subclass or a plain Python function before anything calls it."""
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py") or "/" in target:
            file = Path(target)
            if not file.is_file():
                raise InputError(f"--arch {spec!r}: no such file {file}")
            mod_spec = importlib.util.spec_from_file_location(file.stem, file)
            assert mod_spec and mod_spec.loader
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            with _cwd_importable():
                module = importlib.import_module(target)
        fn = getattr(module, attr)
    except InputError:
        raise
    except (Exception, SystemExit) as e:
        raise InputError(f"--arch {spec!r}: cannot import it: {type(e).__name__}: {e}") from e
    if not (inspect.isfunction(fn) or (inspect.isclass(fn) and issubclass(fn, nn.Module))):
        raise InputError(f"--arch {spec!r}: {type(fn).__name__} {attr!r} is not an nn.Module "
                         "class or a Python function; dsconv calls only those")
    return fn


def read_plan(path: Path) -> dict[str, Any] | None:
    """The plan beside a model file (``NAME.plan.json``), checked whole before anything is
    built from it; None when there is none."""
    where = plan_path(path)
    if not where.exists():
        return None
    text = read_text(where, None, "plan")  # a regular file of sane size, or one line
    try:
        doc = json.loads(text)
        validate_plan(doc)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not a JSON plan ({e})") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be a plan") from None
    except ValueError as e:
        raise InputError(f"{where}: {e}") from None
    return doc


def _plan_arch(path: Path, plan: dict[str, Any] | None, arch: str | None,
               arch_kwargs: dict[str, Any] | None) -> tuple[str, dict[str, Any], str | None]:
    """The architecture to build a state_dict with: ``--arch``, else the one its plan
    records. A plan is a file: it may name a preset, but code it names is imported only
    when the user names it too (``--arch``, or ``arch:`` in a config), as today."""
    if arch is not None:
        return arch, arch_kwargs or {}, None
    recorded = (plan or {}).get("arch")
    if recorded is None:
        raise InputError(f"{path}: holds a state_dict; --arch is needed to build the model",
                         hint=f"--arch package.module:callable, file.py:callable or a "
                         f"preset ({', '.join(PRESETS)})")
    spec = recorded["arch"]
    kwargs = {**recorded.get("arch_kwargs", {}), **(arch_kwargs or {})}
    if spec not in PRESETS:
        raise InputError(f"{plan_path(path)} names code to build the model (arch {spec!r}); "
                         "a plan file cannot grant that itself",
                         hint=f"pass --arch {spec} (or arch: in a config) if you trust it")
    return spec, kwargs, f"built the architecture the plan records: {spec}"


def _load_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], arch: str) -> str | None:
    if any(v.is_meta for v in sd.values()):
        raise InputError("the state_dict's tensors are on the meta device (no weights)",
                         hint="save a state_dict with real weights")
    want = model.state_dict()
    stripped = None
    for prefix in PREFIXES:
        if set(sd) != set(want) and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
            stripped = prefix
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in sd and sd[k].shape != want[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}"
                        + (" ..." if len(unexpected) > 3 else ""))
    if shapes:
        problems.append(f"shape mismatch {', '.join(shapes[:3])}")
    if problems:
        converted = any(k.endswith(".0.weight") and k[:-len(".0.weight")] + ".weight" in missing
                        for k in unexpected)
        raise InputError(f"state_dict does not match {arch}: {'; '.join(problems)}",
                         hint="a converted state_dict loads with its NAME.plan.json beside "
                         "it" if converted else None)
    model.load_state_dict(sd)
    return stripped


def _module(model: nn.Module, path: Path, plan: dict[str, Any] | None) -> Loaded:
    """A whole pickled model: used as it is; a plan beside it is not applied (the pickle
    holds the converted modules already), and a note says so."""
    notes = ([f"{plan_path(path)} not applied: {path.name} holds a whole model, already "
              "in its converted form"] if plan is not None else [])
    return _checked(Loaded(model, "module", str(path), notes))


def load_model(path: Path, *, map_location: str = "cpu", trust_pickle: bool = False,
               state_dict_key: str | None = None, arch: str | None = None,
               arch_kwargs: dict[str, Any] | None = None,
               warn: Callable[[str], None] = lambda m: None) -> Loaded:
    """Load a model file safely (``weights_only=True`` unless trusted); every failure is an
    ``InputError`` naming the file and what to do."""
    _check_file(path)
    plan = read_plan(path)  # before any tensor is made
    obj = _torch_load(path, map_location, trust_pickle, warn)
    if isinstance(obj, torch.jit.ScriptModule):
        raise InputError(f"{path}: a TorchScript module; dsconv converts eager models")
    if isinstance(obj, nn.Module):
        return _module(obj, path, plan)
    if state_dict_key is not None:
        if not isinstance(obj, Mapping) or state_dict_key not in obj:
            keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else "-"
            raise InputError(f"--state-dict-key {state_dict_key!r}: not in {path} "
                             f"(top-level keys: {keys})")
        obj = obj[state_dict_key]
        if isinstance(obj, nn.Module):
            return _module(obj, path, plan)
    elif isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for k in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(k)) or isinstance(obj.get(k), nn.Module):
                obj = obj[k]
                break
        if isinstance(obj, nn.Module):
            return _module(obj, path, plan)
    if not _is_tensor_dict(obj):
        what = (f"a dict with keys {', '.join(map(str, list(obj)[:8]))}"
                if isinstance(obj, Mapping) else type(obj).__name__)
        raise InputError(f"{path}: no model or state_dict found ({what})",
                         hint="name the entry with --state-dict-key")
    arch, kwargs, built = _plan_arch(path, plan, arch, arch_kwargs)
    model = build_arch(arch, kwargs)
    notes = [built] if built else []
    what = f"--arch {arch}" if built is None else f"arch {arch}"
    if plan is not None:
        from .convert import apply_plan

        try:
            apply_plan(model, plan)
        except ValueError as e:
            raise InputError(f"{plan_path(path)}: {e}") from None
        what += f" with the plan {plan_path(path).name}"
        notes.append(f"applied {plan_path(path)} ({len(plan['layers'])} depthwise separable "
                     "layer(s))")
    stripped = _load_state_dict(model, obj, what)
    if stripped:
        notes.append(f"stripped key prefix {stripped!r}")
    return _checked(Loaded(model, "state_dict", str(path), notes, plan))


def _checked(loaded: Loaded) -> Loaded:
    """A model whose tensors are on the meta device has no weights to convert or time."""
    if any(t.is_meta for t in (*loaded.model.parameters(), *loaded.model.buffers())):
        raise InputError(f"{loaded.source}: its tensors are on the meta device (no weights)",
                         hint="save the model with real weights; to count an architecture "
                         "without weights, use dsconv compare --arch")
    return loaded


@contextlib.contextmanager
def module_stack(model: nn.Module, stack: list[str],
                 enter: Callable[[nn.Module, str, Any], None] | None = None,
                 leave: Callable[[nn.Module, str, Any], None] | None = None) -> Iterator[None]:
    """Forward pre/post hooks on every module of ``model`` that keep ``stack`` the names of
    the modules running, innermost last (what :func:`forward_error` reports);
    ``enter(module, name, args)`` and ``leave(module, name, output)`` see each call. The
    hooks are removed afterwards, whatever happens."""
    names = {id(m): n for n, m in model.named_modules()}

    def pre(mod: nn.Module, args: Any) -> None:
        name = names.get(id(mod), type(mod).__name__)
        stack.append(name)
        if enter is not None:
            enter(mod, name, args)

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        if leave is not None:
            leave(mod, names.get(id(mod), type(mod).__name__), out)
        if stack:
            stack.pop()

    hooks = [h for m in model.modules() for h in (m.register_forward_pre_hook(pre),
                                                    m.register_forward_hook(post))]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def forward_once(model: nn.Module, shape: tuple[int, ...], seed: int,
                 x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One eval-mode forward on a seeded random input (or ``x``); the modules' train/eval
    modes are restored. A failure names the innermost module it happened in: out of
    memory is the environment (exit 1), anything else the input (exit 2)."""
    p = next(iter(model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    dt = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    if x is None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g).to(dev, dt)
    modes = {m: m.training for m in model.modules()}
    stack: list[str] = []
    model.eval()
    try:
        with torch.no_grad(), module_stack(model, stack):
            y = model(x)
    except (Exception, SystemExit) as e:
        raise forward_error(model, stack, shape, e) from e
    finally:
        for m, mode in modes.items():
            m.training = mode
    t = first_tensor(y)
    if t is None:
        raise InputError(f"the model's forward returned {type(y).__name__}, not a tensor "
                         "(or a tuple, list or dict holding one)")
    return x, t


def first_tensor(y: Any) -> torch.Tensor | None:
    """A forward's output, or the first tensor of the tuple, list or dict it returned."""
    if isinstance(y, torch.Tensor):
        return y
    items = y.values() if isinstance(y, Mapping) else (
        y if isinstance(y, (list, tuple)) else ())
    return next((v for v in items if isinstance(v, torch.Tensor)), None)


def check_written(files: list[tuple[Path, bytes | str]], model: nn.Module,
                  before: bool = False) -> None:
    """What ``convert`` writes, checked before it says "wrote". ``before``: the model's
    bytes (the first file) are a torch file, and a state_dict loads as weights
    (``weights_only``) holding every tensor of the model with its shape. After writing:
    every file on disk, read back, is the bytes that were checked (size and content). A
    ``BackendError`` (exit 1) says what is wrong: user code that replaced ``torch.save``
    can never produce "wrote" over an empty file."""
    for i, (path, data) in enumerate(files):
        raw = data.encode() if isinstance(data, str) else data
        if before:
            got = raw
        else:
            try:
                got = path.read_bytes()
            except OSError as e:
                raise BackendError(f"{path}: cannot be read back after writing "
                                   f"({e.strerror or e})") from None
            if got != raw:  # the same bytes as checked before: they load the same
                raise BackendError(f"{path}: {len(got):,} bytes on disk after writing "
                                   f"{len(raw):,}: not what was written")
            continue
        if i == 0:
            _check_model_bytes(path, got, model, "about to be written" if before else
                               "written")


def _check_model_bytes(path: Path, data: bytes, model: nn.Module, what: str) -> None:
    import io

    bad = f"{path}: the model {what} "
    if not data or not zipfile.is_zipfile(io.BytesIO(data)):
        raise BackendError(bad + f"is not a torch file ({len(data):,} bytes; was torch.save "
                           "replaced by user code?); nothing more is said to be written")
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise BackendError(bad + f"is not a torch file ({describe(e)})") from None
    if not any(n.endswith("data.pkl") for n in names):
        raise BackendError(bad + "holds no pickled object (data.pkl)")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # a whole pickled module: not weights; its archive was checked
        return
    if not isinstance(obj, Mapping):
        raise BackendError(bad + f"loads as {type(obj).__name__}, not a state_dict")
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if got != want:
        missing = sorted(set(want) - set(got))[:3]
        raise BackendError(bad + "does not hold the converted model's weights "
                           f"({len(got)} tensors, {len(want)} expected"
                           + (f"; missing {', '.join(missing)}" if missing else "") + ")")
