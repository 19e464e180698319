"""Profile configs: YAML (PyYAML's SafeLoader only) validated into typed pydantic models.

Every error is one :class:`ConfigError` naming the file, the line where known and the
key path (``cases[1].layer.in``). Reading a config executes nothing; but a model case's
``arch`` names code (``package.module:callable`` or ``file.py:callable``) that is imported
and called when the case runs, and ``trust_pickle`` lets a model file run code: both need
the matching command-line flag (``--trust-code``, ``--trust-pickle``). Turning cases into
runnable ones (sweeps, budgets) is :mod:`dsconv_cli.suite`, in the core.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)

from .cases import MAX_CASES
from .errors import ConfigError
from .gate import BUDGET_METRICS, MEASURED_METRICS
from .inputs import read_bytes
from .kinds import kind_names
from .names import RUNTIME_NAMES
from .options import did_you_mean
from .specs import ACTIVATIONS
from .suite import SOURCE_METRICS, source_of

__all__ = ["Budget", "Config", "check_trust", "config_from_data", "json_schema",
           "load_config"]

StrictCfg = ConfigDict(strict=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)
PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0)]
IntList = Union[PosInt, list[PosInt]]
PairValue = Union[PosInt, str]
PairList = Union[PairValue, list[PairValue]]
PadValue = Union[Annotated[int, Field(ge=0)], str]
# derived from the kind registry and the spec module: one spelling each
KindName = Literal[kind_names()]  # type: ignore[valid-type]
ActivationName = Literal[ACTIVATIONS]  # type: ignore[valid-type]
RuntimeName = Literal[RUNTIME_NAMES]  # type: ignore[valid-type]
RuntimeList = Annotated[list[RuntimeName], Field(min_length=1)]


class StrictModel(BaseModel):
    model_config = StrictCfg


class TimingCfg(StrictModel):
    """Measurement settings (seconds)."""

    warmup: Annotated[int, Field(ge=0, description="untimed calls before timing")] = 3
    min_time: Annotated[float, Field(gt=0, le=3600,
                                     description="seconds of timed runs per layer")] = 0.2


def _budget_model() -> type[StrictModel]:
    """The ``budget:`` mapping, one optional positive limit per :data:`BUDGET_METRICS`."""
    fields: dict[str, Any] = {
        name: (Optional[PosInt if m.integer else PosFloat], Field(None, description=m.help))
        for name, m in BUDGET_METRICS.items()}
    doc = ("Limits a case must meet. Measured: " + ", ".join(MEASURED_METRICS)
           + ". Analytic: the rest.")
    return create_model("Budget", __base__=StrictModel, __doc__=doc, **fields)


Budget = _budget_model()


class Defaults(StrictModel):
    budget: Budget = Budget()  # type: ignore[valid-type]


class LayerCfg(StrictModel):
    """A layer comparison, as on the command line; lists form a sweep."""

    kind: KindName = "separable"  # type: ignore[valid-type]
    in_: IntList = Field(alias="in")
    out: Optional[IntList] = None
    kernel: Optional[PairList] = None
    hw: PairList
    stride: Optional[PairList] = None
    padding: Optional[Union[PadValue, list[PadValue]]] = None
    dilation: Optional[PairList] = None
    groups: Optional[IntList] = None
    bias: Optional[bool] = None
    depth_multiplier: Optional[IntList] = None
    expansion: Optional[Union[PosFloat, list[PosFloat]]] = None
    expanded_channels: Optional[IntList] = None
    se: Optional[bool] = None
    squeeze_channels: Optional[IntList] = None
    activation: Optional[ActivationName] = None
    eca_k: Optional[IntList] = None


class PresetCfg(StrictModel):
    name: str
    width: PosFloat = 1.0
    resolution: PosInt = 224
    classes: PosInt = 1000


class VsCfg(StrictModel):
    """What a model case is timed against in the same job: a model (the keys of ``model``)
    or a preset."""

    path: Optional[str] = Field(None, description="relative to the config file")
    arch: Optional[str] = None
    arch_kwargs: Optional[dict[str, Any]] = None
    trust_pickle: bool = False
    state_dict_key: Optional[str] = None
    preset: Optional[PresetCfg] = None

    @model_validator(mode="after")
    def _one_source(self) -> VsCfg:
        if (self.path is None) == (self.preset is None):
            raise ValueError("vs needs exactly one of path, preset (or is the string ds)")
        return self


class ModelCfg(StrictModel):
    """A saved model, loaded as safely as ``dsconv convert`` loads it."""

    path: str = Field(description="relative to the config file")
    input_shape: Annotated[list[PosInt], Field(min_length=1)]
    convert: bool = False
    trust_pickle: bool = False
    arch: Optional[str] = None
    arch_kwargs: Optional[dict[str, Any]] = None
    state_dict_key: Optional[str] = None
    depth_multiplier: PosInt = 1
    min_channels: PosInt = 32
    vs: Optional[Union[Literal["ds"], VsCfg]] = Field(
        None, description="timed against this in the same job (interleaved A/B): ds (this "
        "model converted), a model or a preset; budget max_slowdown gates it")


class CaseCfg(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    layer: Optional[LayerCfg] = None
    preset: Optional[PresetCfg] = None
    model: Optional[ModelCfg] = None
    budget: Budget = Budget()  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_source(self) -> CaseCfg:
        given = [k for k in ("layer", "preset", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a case needs exactly one of layer, preset, model"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class Config(StrictModel):
    """A ``dsconv profile`` config."""

    version: Literal[1] = 1
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    threads: Optional[PosInt] = None
    batch: PosInt = 1
    memory_format: Literal["nchw", "channels_last", "both"] = "nchw"
    runtime: Union[RuntimeName, RuntimeList] = Field(
        "eager", description=f"{', '.join(RUNTIME_NAMES)}, or a list: every case is timed in "
        "each (onnxruntime needs dsconv[onnx])")
    timing: TimingCfg = TimingCfg()
    defaults: Defaults = Defaults()
    max_cases: PosInt = MAX_CASES
    cases: Annotated[list[CaseCfg], Field(min_length=1)]
    _file: str = PrivateAttr("")
    _dir: Path = PrivateAttr(Path("."))
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)

    def error(self, message: str, path: tuple[Any, ...], hint: str | None = None
              ) -> ConfigError:
        """A ConfigError at ``path`` with its line, for checks made after loading."""
        line = next((self._lines[path[:i]] for i in range(len(path), 0, -1)
                     if path[:i] in self._lines), None)
        return ConfigError(message, file=self._file, path=fmt_path(path), line=line, hint=hint)


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dsconv profile config"
    return schema


# ---------------------------------------------------------------- loading + errors

def _lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], int]]:
    """Key path -> 1-based line of every mapping key and sequence item."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            yield (*path, key), k.start_mark.line + 1
            for p, line in _lines(v, (*path, key)):
                if p != (*path, key):
                    yield p, line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _lines(item, (*path, i))


def fmt_path(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic error location that exists in the data: union tags such as
    'int' or 'list[int]' are dropped; a missing or unknown key ends the path."""
    out: list[Any] = []
    cur = data
    for p in loc:
        if isinstance(cur, dict):
            if p in cur:
                out.append(p)
                cur = cur[p]
                continue
            if isinstance(p, str) and p.isidentifier():
                out.append(p)
                break
            continue  # a union tag such as 'list[int]'
        if isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            out.append(p)
            cur = cur[p]
            continue
        if isinstance(cur, list) and isinstance(p, str):
            continue
        break
    return tuple(out)


def _model_at(path: tuple[Any, ...]) -> type[BaseModel]:
    model: Any = Config
    for p in path:
        if isinstance(p, int):
            continue
        field = next((f for n, f in model.model_fields.items()
                      if n == p or f.alias == p), None)
        if field is None:
            break
        ann = field.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)
                 and issubclass(a, BaseModel)]
        if not inner and hasattr(ann, "__args__"):  # list[CaseCfg], Optional[X]
            for a in ann.__args__:
                inner += [b for b in getattr(a, "__args__", ()) if isinstance(b, type)
                          and issubclass(b, BaseModel)]
        if inner:
            model = inner[0]
    return model


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _message(err: dict[str, Any], path: tuple[Any, ...]) -> tuple[str, str | None]:
    if err["type"] == "extra_forbidden":
        key = str(path[-1])
        allowed = _allowed_keys(_model_at(path[:-1]))
        close = difflib.get_close_matches(key, allowed, n=1)
        return (f"unknown key {key!r}; allowed: {', '.join(allowed)}",
                f"did you mean {close[0]!r}?" if close else None)
    if err["type"] == "missing":
        return "required key is missing", None
    value = err.get("input")
    if err["type"] in ("literal_error", "enum") and isinstance(value, str):
        choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        return (f"{value!r} is not one of {', '.join(choices)}",
                did_you_mean(value, choices))
    if err["type"] == "too_short":
        n = err.get("ctx", {}).get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}, got none", None
    msg = _plain(err["msg"].replace("Value error, ", ""))
    listed = re.match(r"'([^']*)' is not one of (.*)", msg)
    if listed:
        return msg, did_you_mean(listed[1], re.findall(r"[\w.-]+", listed[2]))
    if "input" in err and err["type"] not in ("model_type", "dict_type") and not isinstance(
            err["input"], (dict, list)):
        msg += f", got {err['input']!r}"
    return msg, None


#: pydantic's phrasings, in dsconv's words (the rest of its message is kept)
_PHRASES = (("Input should be a valid integer", "expected an integer"),
            ("Input should be a valid number", "expected a number"),
            ("Input should be a valid boolean", "expected true or false"),
            ("Input should be a valid string", "expected text"),
            ("Input should be a valid list", "expected a list"),
            ("Input should be a valid dictionary", "expected a mapping"),
            ("Input should be ", "must be "))


def _plain(msg: str) -> str:
    for theirs, ours in _PHRASES:
        if msg.startswith(theirs):
            msg = ours + msg[len(theirs):]
            break
    return msg.split(", unable to parse")[0]


#: a config is a short human-written file: these caps stop a hostile one before it costs
#: memory or minutes (a billion-laughs alias bomb, 100,000 nested brackets, 50 MB)
MAX_CONFIG_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_ALIASES = 1_000
MAX_NODES = 200_000


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader, with the caps checked while the document is composed (one
    parse): nesting depth before the composer recurses, alias count, and duplicate keys in
    a mapping (YAML says they are an error; PyYAML silently keeps the last)."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name, self.depth, self.aliases = name, 0, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise ConfigError(f"more than {MAX_ALIASES} aliases", file=self.name,
                                  line=_line(self.peek_event().start_mark))
        elif self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            if self.depth >= MAX_DEPTH:
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=self.name,
                                  line=_line(self.peek_event().start_mark))
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[str, int] = {}
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode):
                line = k.start_mark.line + 1
                if k.value in seen:
                    raise ConfigError(f"duplicate key {k.value!r} (also on line "
                                      f"{seen[k.value]}); YAML keys must be unique",
                                      file=self.name, line=line)
                seen[k.value] = line
        return node


def _check_expansion(node: yaml.Node, name: str) -> None:
    """The node count once aliases are expanded (a billion-laughs bomb is a small graph
    of shared nodes): counted once per distinct node, in linear time."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) not in sizes:
            kids = ([x for kv in n.value for x in kv] if isinstance(n, yaml.MappingNode)
                    else n.value if isinstance(n, yaml.SequenceNode) else [])
            sizes[id(n)] = 1 + sum(size(k) for k in kids)
            if sizes[id(n)] > MAX_NODES:
                raise ConfigError(f"expands to more than {MAX_NODES:,} values (aliases of "
                                  "aliases?)", file=name, line=_line(n.start_mark))
        return sizes[id(n)]

    size(node)


def _parse(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """The YAML parsed once: the data and its node tree (for line numbers)."""
    loader = _Loader(text, name)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node, name)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


NOT_A_MAPPING = "the config must be a mapping with a 'cases' list"


def load_config(path: Path) -> Config:
    """Read and validate a config; every problem is a one-line :class:`ConfigError`."""
    name = str(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path.stat().st_size:,} bytes: a config is at most "
                              f"{MAX_CONFIG_BYTES:,}", file=name)
        if not path.exists():
            raise FileNotFoundError(path)
        text = read_bytes(path, "CONFIG", "config").decode("utf-8")  # a FIFO: one line
    except FileNotFoundError:
        raise ConfigError("no such file", file=name) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot be read: {e}", file=name) from None
    try:
        data, node = _parse(text, name)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or "malformed YAML").strip()
        if "could not determine a constructor" in problem or "tag" in (e.problem or ""):
            problem = f"{problem} (dsconv reads plain YAML only; tags like !!python are refused)"
        raise ConfigError(f"malformed YAML: {problem}", file=name,
                          line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", file=name) from None
    if not isinstance(data, dict):
        raise ConfigError(NOT_A_MAPPING, file=name, line=1)
    lines = dict(_lines(node)) if node is not None else {}
    return config_from_data(data, name, path.parent, lines)


def config_from_data(data: Any, name: str = "config", base: Path = Path("."),
                     lines: dict[tuple[Any, ...], int] | None = None) -> Config:
    """Validate a config already parsed (a YAML file's data, or a dict the Python API was
    given): errors name ``name`` and the key path; model paths are relative to ``base``."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise ConfigError(NOT_A_MAPPING, file=name)
    if data.get("version", 1) != 1:
        raise ConfigError(f"config version {data['version']!r} needs a newer dsconv (this one "
                          "reads version 1)", file=name, path="version",
                          line=lines.get(("version",)))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        errs = e.errors()
        located = [(_data_path(data, tuple(err["loc"])), err) for err in errs]
        # the deepest error; between equals, an unknown key (a typo: 'inn' makes 'in'
        # missing too, and the typo is what to fix), then a range error over a wrong type
        p, err = max(located, key=lambda x: (len(x[0]), x[1]["type"] == "extra_forbidden",
                                              not x[1]["type"].endswith("_type")))
        msg, hint = _message(dict(err), p)
        line = next((lines[p[:i]] for i in range(len(p), -1, -1) if p[:i] in lines), None)
        raise ConfigError(msg, file=name, path=fmt_path(p), line=line, hint=hint) from None
    cfg._file, cfg._dir, cfg._lines = name, base, lines
    cpus = os.cpu_count() or 1
    if cfg.threads is not None and cfg.threads > cpus:
        raise cfg.error(f"must be 1 to {cpus} (this machine's logical CPUs), got {cfg.threads}",
                        ("threads",))
    seen: dict[str, int] = {}
    for i, c in enumerate(cfg.cases):
        if c.name in seen:
            raise cfg.error(f"duplicate case name {c.name!r} (also cases[{seen[c.name]}])",
                            ("cases", i, "name"))
        seen[c.name] = i
    _check_budgets(cfg)
    for i, c in enumerate(cfg.cases):
        if c.model is not None:
            model_file_format(cfg, i)
    return cfg


def _check_budgets(cfg: Config) -> None:
    for i, c in enumerate(cfg.cases):
        src = source_of(c)
        budget: Any = c.budget  # built from the metric registry: no static attributes
        if budget.max_slowdown is not None and (c.model is None or c.model.vs is None):
            raise cfg.error("max_slowdown gates a model case against its vs:, and this case "
                            "has none", ("cases", i, "budget", "max_slowdown"))
        for metric in budget.model_fields_set:
            if getattr(budget, metric) is not None and metric not in SOURCE_METRICS[src]:
                raise cfg.error(f"a {src.replace('+', ' with ')} case has no {metric} (it "
                                f"allows {', '.join(sorted(SOURCE_METRICS[src]))})",
                                ("cases", i, "budget", metric))


def check_trust(cfg: Config, *, trust_pickle: bool, trust_code: bool) -> None:
    """Trust comes from the command line, never from the file: a case's ``trust_pickle:
    true`` needs ``--trust-pickle``, and an ``arch`` that names code needs ``--trust-code``
    (a config from a pull request must not run code by itself)."""
    from .presets import PRESETS

    for i, c in enumerate(cfg.cases):
        m = c.model
        if m is None:
            continue
        vs = m.vs if isinstance(m.vs, VsCfg) else None
        if vs is not None and vs.trust_pickle and not trust_pickle:
            raise cfg.error(f"case {c.name!r} sets vs.trust_pickle: true, which lets a model "
                            "file run code; a config cannot grant that itself",
                            ("cases", i, "model", "vs", "trust_pickle"),
                            hint="pass --trust-pickle on the command line if you trust it")
        if vs is not None and vs.arch is not None and vs.arch not in PRESETS and not trust_code:
            raise cfg.error(f"case {c.name!r} names code to run (vs.arch: {vs.arch!r}); a "
                            "config cannot grant that itself",
                            ("cases", i, "model", "vs", "arch"),
                            hint="pass --trust-code on the command line if you trust it")
        if m.trust_pickle and not trust_pickle:
            raise cfg.error(f"case {c.name!r} sets trust_pickle: true, which lets its model "
                            "file run code; a config cannot grant that itself",
                            ("cases", i, "model", "trust_pickle"),
                            hint="pass --trust-pickle on the command line if you trust it")
        if m.arch is not None and m.arch not in PRESETS and not trust_code:
            raise cfg.error(f"case {c.name!r} names code to run (arch: {m.arch!r}); a config "
                            "cannot grant that itself", ("cases", i, "model", "arch"),
                            hint="pass --trust-code on the command line if you trust it")


def model_path(cfg: Config, m: ModelCfg) -> Path:
    """A case's model file; relative paths are relative to the config file."""
    p = Path(m.path)
    return p if p.is_absolute() else cfg._dir / p


def arch_spec(cfg: Config, m: ModelCfg) -> str | None:
    """``arch`` with a ``file.py:callable`` path made relative to the config file."""
    if m.arch is None or ":" not in m.arch:
        return m.arch
    file, _, fn = m.arch.rpartition(":")
    if not file.endswith(".py") or Path(file).is_absolute():
        return m.arch
    return f"{cfg._dir / file}:{fn}"


def input_files(cfg: Config) -> list[tuple[str, Path | None]]:
    """Every file the config's cases read (model and vs files, ``file.py`` archs), labelled
    by key path: inputs no output of the run may be."""
    out: list[tuple[str, Path | None]] = []
    for i, c in enumerate(cfg.cases):
        for key, m in (("model", c.model), ("model.vs", getattr(c.model, "vs", None))):
            if m is None or isinstance(m, str):
                continue
            path = getattr(m, "path", None)
            if path is not None:
                p = Path(path)
                out.append((f"cases[{i}].{key}.path", p if p.is_absolute() else cfg._dir / p))
            arch = getattr(m, "arch", None)
            if arch and ":" in arch and arch.rpartition(":")[0].endswith(".py"):
                f = Path(arch.rpartition(":")[0])
                out.append((f"cases[{i}].{key}.arch", f if f.is_absolute() else cfg._dir / f))
    return out


def model_file_format(cfg: Config, i: int) -> str:
    """Check a model case's file exists and looks like a torch file (no torch needed)."""
    m = cfg.cases[i].model
    assert m is not None
    p = model_path(cfg, m)
    key = ("cases", i, "model", "path")
    if not p.exists():
        raise cfg.error(f"model file {p} does not exist", key)
    if not p.is_file():
        raise cfg.error(f"model file {p} is not a regular file (a FIFO, device or "
                        "folder)", key)
    with p.open("rb") as f:
        head = f.read(2)
    if head == b"PK":
        return "torch zip archive"
    if head[:1] == b"\x80":
        return "legacy torch pickle"
    raise cfg.error(f"{p} is not a torch file", key)


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"

