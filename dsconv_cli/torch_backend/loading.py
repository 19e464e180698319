"""Safe model loading: ``weights_only`` unless the user trusts the file, state_dicts and
checkpoints rebuilt with ``--arch``, every failure an ``InputError`` naming the file."""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..presets import PRESETS, get_preset
from .build import build_preset

__all__ = ["Loaded", "load_model", "parse_input_shape"]

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
    try:
        location = torch.device(map_location)
    except RuntimeError:
        raise InputError(f"--map-location {map_location!r}: not a torch device "
                         "(e.g. cpu, cuda, cuda:1)") from None
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
            raise InputError(
                f"{path}: holds pickled Python objects (such as a whole nn.Module); loading "
                "them runs code from the file", hint="pass --trust-pickle only if you trust "
                "the file, or save and convert a state_dict with --arch") from None
    except Exception as e:  # whatever a malformed file makes the unpickler raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a readable torch file (truncated or corrupt?): "
                         f"{first}") from None
    warn(f"--trust-pickle: unpickling {path} runs code from the file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=location, weights_only=False)
    except Exception as e:  # the file's own code failed: still the user's input
        raise InputError(f"{path}: unpickling failed: {type(e).__name__}: {e}") from None


def _arch(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    if spec in PRESETS:
        try:
            return build_preset(get_preset(spec, **kwargs))
        except TypeError as e:
            raise InputError(f"--arch-kwargs for preset {spec}: {e} (width, resolution, "
                             "classes)") from None
    if ":" not in spec:
        raise InputError(f"--arch {spec!r}: expected package.module:callable, "
                         f"path/file.py:callable or a preset ({', '.join(PRESETS)})")
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
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")  # the current folder is importable, as with python -m
            module = importlib.import_module(target)
        fn = getattr(module, attr)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"--arch {spec!r}: cannot import it: {type(e).__name__}: {e}") from None
    try:
        model = fn(**kwargs)
    except Exception as e:
        raise InputError(f"--arch {spec!r}: calling it failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"--arch {spec!r}: returned {type(model).__name__}, not an nn.Module")
    return model


def _load_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], arch: str) -> str | None:
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
        return Loaded(obj, "module", str(path))
    if state_dict_key is not None:
        if not isinstance(obj, Mapping) or state_dict_key not in obj:
            keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else "-"
            raise InputError(f"--state-dict-key {state_dict_key!r}: not in {path} "
                             f"(top-level keys: {keys})")
        obj = obj[state_dict_key]
        if isinstance(obj, nn.Module):
            return Loaded(obj, "module", str(path))
    elif isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for k in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(k)) or isinstance(obj.get(k), nn.Module):
                obj = obj[k]
                break
        if isinstance(obj, nn.Module):
            return Loaded(obj, "module", str(path))
    if not _is_tensor_dict(obj):
        what = (f"a dict with keys {', '.join(map(str, list(obj)[:8]))}"
                if isinstance(obj, Mapping) else type(obj).__name__)
        raise InputError(f"{path}: no model or state_dict found ({what})",
                         hint="name the entry with --state-dict-key")
    if arch is None:
        raise InputError(f"{path}: holds a state_dict; --arch is needed to build the model",
                         hint=f"--arch package.module:callable, file.py:callable or a "
                         f"preset ({', '.join(PRESETS)})")
    model = _arch(arch, arch_kwargs or {})
    stripped = _load_state_dict(model, obj, arch)
    notes = [f"stripped key prefix {stripped!r}"] if stripped else []
    return Loaded(model, "state_dict", str(path), notes)


def parse_input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--input-shape {text!r}: expected integers like 1,3,224,224") from None
    if len(shape) < 2 or min(shape) <= 0:
        raise InputError(f"--input-shape {text!r}: expected positive sizes like 1,3,224,224")
    return shape


