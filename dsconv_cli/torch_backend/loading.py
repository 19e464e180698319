"""Safe model loading: ``weights_only`` unless the user trusts the file, state_dicts and
checkpoints rebuilt with ``--arch``, every failure an ``InputError`` naming the file."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
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

from ..errors import BackendError, InputError
from ..presets import PRESETS, get_preset
from . import forward_error, is_oom
from .build import build_preset

__all__ = ["Loaded", "build_arch", "build_arch_meta", "forward_once", "load_model",
           "parse_input_shape", "resolve_arch"]

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")
PREFIXES = ("module.", "model.")


@dataclass
class Loaded:
    model: nn.Module
    kind: str  # "module" | "state_dict"
    source: str
    notes: list[str] = field(default_factory=list)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
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
        if "Unsupported global" not in msg:  # garbage, not a pickled object
            detail = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln),
                          msg.splitlines()[0] if msg else "unpickling error")
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
        raise InputError(f"{path}: unpickling failed: {type(e).__name__}: {e}") from e


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
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if is_oom(e):
        return BackendError(f"{path}: out of memory while loading it: {first}")
    if isinstance(e, (EOFError, zipfile.BadZipFile)) or "central directory" in first or (
            "failed finding" in first) or "truncated" in first.lower():
        return InputError(f"{path}: truncated or corrupt torch file: {first}")
    return InputError(f"{path}: not a readable torch file: {type(e).__name__}: {first}")


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
    try:
        model = fn(**kwargs)
    except (Exception, SystemExit) as e:  # user code never decides dsconv's exit code
        raise InputError(f"--arch {spec!r}: calling it failed: {type(e).__name__}: {e}") from e
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
        raise InputError(f"state_dict does not match --arch {arch}: {'; '.join(problems)}")
    model.load_state_dict(sd)
    return stripped


def load_model(path: Path, *, map_location: str = "cpu", trust_pickle: bool = False,
               state_dict_key: str | None = None, arch: str | None = None,
               arch_kwargs: dict[str, Any] | None = None,
               warn: Callable[[str], None] = lambda m: None) -> Loaded:
    """Load a model file safely (``weights_only=True`` unless trusted); every failure is an
    ``InputError`` naming the file and what to do."""
    _check_file(path)
    obj = _torch_load(path, map_location, trust_pickle, warn)
    if isinstance(obj, torch.jit.ScriptModule):
        raise InputError(f"{path}: a TorchScript module; dsconv converts eager models")
    if isinstance(obj, nn.Module):
        return _checked(Loaded(obj, "module", str(path)))
    if state_dict_key is not None:
        if not isinstance(obj, Mapping) or state_dict_key not in obj:
            keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else "-"
            raise InputError(f"--state-dict-key {state_dict_key!r}: not in {path} "
                             f"(top-level keys: {keys})")
        obj = obj[state_dict_key]
        if isinstance(obj, nn.Module):
            return _checked(Loaded(obj, "module", str(path)))
    elif isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for k in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(k)) or isinstance(obj.get(k), nn.Module):
                obj = obj[k]
                break
        if isinstance(obj, nn.Module):
            return _checked(Loaded(obj, "module", str(path)))
    if not _is_tensor_dict(obj):
        what = (f"a dict with keys {', '.join(map(str, list(obj)[:8]))}"
                if isinstance(obj, Mapping) else type(obj).__name__)
        raise InputError(f"{path}: no model or state_dict found ({what})",
                         hint="name the entry with --state-dict-key")
    if arch is None:
        raise InputError(f"{path}: holds a state_dict; --arch is needed to build the model",
                         hint=f"--arch package.module:callable, file.py:callable or a "
                         f"preset ({', '.join(PRESETS)})")
    model = build_arch(arch, arch_kwargs or {})
    stripped = _load_state_dict(model, obj, arch)
    notes = [f"stripped key prefix {stripped!r}"] if stripped else []
    return _checked(Loaded(model, "state_dict", str(path), notes))


def _checked(loaded: Loaded) -> Loaded:
    """A model whose tensors are on the meta device has no weights to convert or time."""
    if any(t.is_meta for t in (*loaded.model.parameters(), *loaded.model.buffers())):
        raise InputError(f"{loaded.source}: its tensors are on the meta device (no weights)",
                         hint="save the model with real weights; to count an architecture "
                         "without weights, use dsconv compare --arch")
    return loaded


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
    names = {id(m): n for n, m in model.named_modules()}

    def pre(mod: nn.Module, args: Any) -> None:
        stack.append(names.get(id(mod), type(mod).__name__))

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        if stack:
            stack.pop()

    hooks = [h for m in model.modules() for h in (m.register_forward_pre_hook(pre),
                                                    m.register_forward_hook(post))]
    model.eval()
    try:
        with torch.no_grad():
            y = model(x)
    except (Exception, SystemExit) as e:
        raise forward_error(model, stack, shape, e) from e
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if not isinstance(y, torch.Tensor):
        items = y.values() if isinstance(y, Mapping) else (
            y if isinstance(y, (list, tuple)) else ())
        t = next((v for v in items if isinstance(v, torch.Tensor)), None)
        if t is None:
            raise InputError(f"the model's forward returned {type(y).__name__}, not a tensor "
                             "(or a tuple, list or dict holding one)")
        y = t
    return x, y


def parse_input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--input-shape {text!r}: expected integers like 1,3,224,224") from None
    if len(shape) < 2 or min(shape) <= 0:
        raise InputError(f"--input-shape {text!r}: expected positive sizes like 1,3,224,224")
    return shape


