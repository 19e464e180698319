"""Names the command line, the config and the torch backend share (stdlib only).

The CLI's ``--runtime`` choices and the config's ``runtime:`` validation come from
:data:`RUNTIME_NAMES`; :data:`dsconv_cli.torch_backend.runtimes.RUNTIMES` registers one
factory per name here (a test checks the two agree), so the CLI and config never import
torch to know them.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

__all__ = ["EXPORT_FORMATS", "PRESET_NAMES", "RUNTIME_HELP", "RUNTIME_NAMES", "export_format"]

#: runtime name -> one-line description, in the order help texts list them
RUNTIME_HELP: dict[str, str] = {
    "eager": "plain PyTorch",
    "compile": "torch.compile, inductor",
    "onnxruntime": "ONNX export timed in onnxruntime",
}
#: every runtime a case can be timed in
RUNTIME_NAMES: tuple[str, ...] = tuple(RUNTIME_HELP)

#: the presets' names, in :data:`dsconv_cli.presets.PRESETS`' order (a test checks the two
#: agree), so that the help lists them without building the presets' classes
PRESET_NAMES: tuple[str, ...] = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                                 "mobilenet_v3_small", "efficientnet_b0")

#: what each suffix of ``convert --export`` writes
EXPORT_FORMATS: dict[str, str] = {".pt2": "torch.export", ".onnx": "onnx"}


def export_format(path: Path) -> str:
    """The format a ``--export`` path asks for, by its suffix."""
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--export {path}: the suffix picks the format: .pt2 (torch.export) "
                         "or .onnx (ONNX Runtime)")
    return fmt
