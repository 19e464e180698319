"""Make every file the README's examples name, in one folder, so they run anywhere.

    python examples/make_files.py demo && cd demo

writes (seeded, so the README's outputs come out the same):

- ``tiny_resnet.py``: a small ResNet-style network (``build(classes=10)``), for ``--arch``;
- ``tiny.pt``: its state_dict; ``ckpt.pt``: a checkpoint dict holding it (``model_state``);
- ``model.pt``: a whole pickled ``nn.Module`` (plain torch layers; needs ``--trust-pickle``);
- ``mnv2.pt``: the state_dict of dsconv's ``mobilenet_v2`` preset with 10 classes;
- ``calib.pt`` (a torch.save'd tensor) and ``held_out.npy``: 64 unlabelled 3x32x32 inputs each;
- ``configs/``: the repository's example configs, with the ``model.pt`` that
  ``configs/model-conversion.yaml`` names.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch  # noqa: TID253  (an example script, not the package)
from torch import nn  # noqa: TID253

from dsconv_cli.presets import get_preset
from dsconv_cli.torch_backend.build import build_preset  # noqa: TID253

REPO = Path(__file__).resolve().parents[1]


def _tiny_resnet(folder: Path) -> nn.Module:
    """``build()`` of the network file copied into ``folder``, imported from there."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_resnet", folder / "tiny_resnet.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net: nn.Module = module.build(classes=10)
    return net


def _pickled_net() -> nn.Module:
    """A network of plain torch layers: its pickle loads without any model code."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


def make_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "configs", folder / "configs", dirs_exist_ok=True)
    shutil.copy(REPO / "configs" / "models" / "tiny_resnet.py", folder / "tiny_resnet.py")
    torch.save(_tiny_resnet(folder / "configs" / "models").state_dict(),
               folder / "configs" / "model.pt")
    tiny = _tiny_resnet(folder).state_dict()
    torch.save(tiny, folder / "tiny.pt")
    torch.save({"model_state": tiny, "epoch": 3}, folder / "ckpt.pt")
    torch.save(_pickled_net(), folder / "model.pt")
    torch.manual_seed(0)
    torch.save(build_preset(get_preset("mobilenet_v2", classes=10)).state_dict(),
               folder / "mnv2.pt")
    g = torch.Generator().manual_seed(0)
    torch.save(torch.randn(64, 3, 32, 32, generator=g), folder / "calib.pt")
    np.save(folder / "held_out.npy", torch.randn(64, 3, 32, 32, generator=g).numpy())


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    make_files(target)
    print(f"example files written to {target}/", file=sys.stderr)
