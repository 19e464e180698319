"""Torch-free checks of a model case for ``profile --dry-run`` (stdlib only): what a real
run would refuse, found without importing torch or running any of the user's code.

- The pickle inside a torch file is read as opcodes (``pickletools``), never executed: a
  global outside the tensor-rebuilding set torch's ``weights_only`` loader allows (a whole
  ``nn.Module``, a numpy array...) means the real run needs ``trust_pickle``. This is a
  pre-check; the real run still decides with torch's own loader.
- An ``arch`` is located and parsed (``ast``), never imported: the file or module must
  exist, parse, and define the callable at its top level.
"""

from __future__ import annotations

import ast
import importlib.util
import pickletools
import zipfile
from pathlib import Path

from .errors import InputError
from .inputs import read_bytes, read_text

__all__ = ["arch_problem", "pickle_globals", "unsafe_globals"]

#: modules whose globals a plain state_dict or checkpoint pickle uses (tensor rebuilding,
#: storages, ordered dicts, dtypes); torch's weights_only loader allows these
_SAFE_MODULES = ("torch._utils", "torch", "collections", "torch._tensor", "builtins",
                 "_codecs", "torch.serialization")
_UNSAFE_PREFIXES = ("torch.nn", "torch.jit", "torch.optim", "torch.fx")


def pickle_globals(path: Path) -> list[str]:
    """Every ``module.name`` global the file's pickle references (opcodes only)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return []
            data = z.read(name)
    else:
        data = read_bytes(path, None, "model")
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name == "STOP":
                break
    except (ValueError, EOFError):  # a truncated pickle: the real load will say so
        pass
    return list(dict.fromkeys(found))


def unsafe_globals(path: Path) -> list[str]:
    """The globals a ``weights_only`` load would refuse (a best-effort, torch-free guess)."""
    out = []
    for g in pickle_globals(path):
        module = g.rpartition(".")[0]
        if g.startswith(_UNSAFE_PREFIXES) or module not in _SAFE_MODULES:
            out.append(g)
    return out


def arch_problem(spec: str, base: Path) -> str | None:
    """Why ``spec`` (``file.py:fn`` relative to ``base``, or ``package.module:fn``) could
    not be called, or None; nothing is imported."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not attr.isidentifier():
        return None  # a preset name, or malformed: the real run says which
    if target.endswith(".py") or "/" in target:
        file = Path(target) if Path(target).is_absolute() else base / target
    else:
        top, _, rest = target.partition(".")
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return f"module {top!r} is not importable"
        roots = list(found.submodule_search_locations or []) or (
            [str(Path(found.origin).parent)] if found.origin else [])
        if not rest:
            if not found.origin or not found.origin.endswith(".py"):
                return None  # a compiled or namespace module: only a real import can tell
            file = Path(found.origin)
        else:
            parts = rest.split(".")
            cands = [Path(r, *parts).with_suffix(".py") for r in roots] + [
                Path(r, *parts, "__init__.py") for r in roots]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                return f"module {target!r} is not importable"
            file = hit
    if not file.exists():
        return f"no such file {file}"
    try:  # a FIFO or a device: refused, never read
        tree = ast.parse(read_text(file, None, "config"), str(file))
    except InputError as e:
        return str(e)
    except (SyntaxError, OSError) as e:
        return f"{file} does not parse: {e}"
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if attr not in names:
        return f"{file} defines no {attr!r} at its top level"
    return None
