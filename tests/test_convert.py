"""`dsconv convert` on real models built here: structure, exactness, safety, writing."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli import apply_plan
from dsconv_cli.cli import app

from .models import MobileNetLike, small_resnet
from .utils import validate_report

runner = CliRunner()
SHAPE = "2,3,32,32"


def run(*args: Any) -> Any:
    return runner.invoke(app, ["convert", *map(str, args)])


def forward(model: nn.Module, seed: int = 1) -> torch.Tensor:
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture
def mobilenet_file(tmp_path: Path) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    m = MobileNetLike()
    p = tmp_path / "mobilenet.pt"
    torch.save(m, p)
    return m, p


def load_pickle(p: Path) -> nn.Module:
    return torch.load(p, weights_only=False)


@pytest.mark.parametrize("factory", [MobileNetLike, small_resnet])
def test_convert_structure_params_and_shapes(tmp_path: Path, factory: Any) -> None:
    torch.manual_seed(0)
    m = factory()
    src, out = tmp_path / "m.pt", tmp_path / "o.pt"
    torch.save(m, src)
    r = run(src, "-o", out, "--trust-pickle", "--input-shape", SHAPE, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    conv = load_pickle(out)
    assert forward(conv).shape == forward(m).shape
    # the report's params are torch's own count of the modules, layer by layer
    saved = 0
    for la in data["cases"][0]["layers"]:
        orig = m.get_submodule(la["name"])
        assert nparams(orig) == la["params_before"]
        if la["status"] == "converted":
            pair = conv.get_submodule(la["name"])
            assert isinstance(pair, nn.Sequential) and len(pair) == 2
            assert pair[0].groups == orig.in_channels and pair[1].kernel_size == (1, 1)
            assert nparams(pair) == la["params_after"]
            k = orig.kernel_size[0] * orig.kernel_size[1]
            m_ = la["rank"]
            assert la["params_after"] == orig.in_channels * m_ * k + (
                orig.in_channels * m_ * orig.out_channels // orig.groups) + (
                orig.out_channels if orig.bias is not None else 0)
            saved += la["params_before"] - la["params_after"]
    assert nparams(conv) == nparams(m) - saved
    assert data["cases"][0]["totals"]["model_params_after"] == nparams(conv)


def test_full_rank_is_exact(mobilenet_file: tuple[nn.Module, Path], tmp_path: Path) -> None:
    m, src = mobilenet_file
    out = tmp_path / "exact.pt"
    r = run(src, "-o", out, "--trust-pickle", "--depth-multiplier", 15, "--allow-larger",
            "--input-shape", SHAPE, "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["verification"]["rel_diff"] < 1e-5
    assert rel(forward(load_pickle(out)), forward(m)) < 1e-5
    assert all(la["weight_error"] < 1e-6 for la in case["layers"] if la["status"] == "converted")


def test_rank_one_weights_exact_with_m1(tmp_path: Path) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 16, 3, padding=1, bias=True)
    with torch.no_grad():  # W[:, c] = a_c b_c^T: every slice rank 1
        a, b = torch.randn(32, 16), torch.randn(32, 9)
        conv.weight.copy_(torch.einsum("co,ck->ock", a, b).reshape(16, 32, 3, 3))
    model = nn.Sequential(conv)
    src, out = tmp_path / "r1.pt", tmp_path / "r1_ds.pt"
    torch.save(model, src)
    x = torch.randn(2, 32, 8, 8)
    r = run(src, "-o", out, "--trust-pickle", "--input-shape", "2,32,8,8", "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["layers"][0]["rank"] == 1 and case["layers"][0]["energy"] == pytest.approx(1)
    with torch.no_grad():
        assert rel(load_pickle(out)(x), model(x)) < 1e-5
    # --init random is the seed's behaviour: shapes fine, outputs not
    out2 = tmp_path / "r1_rand.pt"
    r = run(src, "-o", out2, "--trust-pickle", "--init", "random")
    assert r.exit_code == 0, r.stderr
    with torch.no_grad():
        assert rel(load_pickle(out2)(x), model(x)) > 0.1


def test_keeps_attributes_mode_dtype_and_sharing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = MobileNetLike().double()
    m.blocks[2].train(False)  # mixed modes must survive
    src, out = tmp_path / "m.pt", tmp_path / "o.pt"
    torch.save(m, src)
    assert run(src, "-o", out, "--trust-pickle").exit_code == 0
    c = load_pickle(out)
    same = c.blocks[2]["same"]
    dw, pw = same[0], same[1]
    assert dw.padding == "same" and dw.padding_mode == "reflect" and dw.kernel_size == (5, 3)
    assert pw.bias is not None and dw.bias is None
    assert dw.weight.dtype == torch.float64
    dil = c.blocks[2]["dil"][0]
    assert dil.dilation == (2, 2) and dil.padding == (2, 2)
    strided = c.blocks[0][0][0]
    assert strided.stride == (2, 1) and strided.padding == (1, 2)
    assert c.blocks[1][0] is c.blocks[1][2]  # the shared conv is converted once, shared again
    assert c.training and not c.blocks[2].training and not same.training
    assert c.blocks[2]["pw"].kernel_size == (1, 1)  # 1x1 untouched
    grp = c.blocks[2]["grp"]  # a grouped conv is converted per group: the pointwise keeps it
    assert isinstance(grp, nn.Sequential) and grp[1].groups == 4 and grp[0].groups == 64


def test_state_dict_arch_plan_and_apply_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    (tmp_path / "mynet.py").write_text(
        "from tests.models import small_resnet\n"
        "def build(classes=10):\n    return small_resnet(classes)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    torch.manual_seed(0)
    m = small_resnet(7)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in
                                           m.state_dict().items()}}, "ckpt.pt")
    for arch in ("mynet.py:build", "mynet:build"):
        out = tmp_path / f"out_{arch.replace(':', '_')}.pt"
        r = run("ckpt.pt", "-o", out, "--arch", arch, "--arch-kwargs", '{"classes": 7}',
                "--input-shape", SHAPE)
        assert r.exit_code == 0, r.stderr
        assert "module." in r.stderr  # the stripped prefix is noted
        plan = json.loads(Path(f"{out}.plan.json").read_text())
        assert plan["layers"] and all("depth_multiplier" in la for la in plan["layers"])
        sd = torch.load(out, weights_only=True)
        rebuilt = apply_plan(small_resnet(7), plan)
        rebuilt.load_state_dict(sd)  # strict: the structure matches exactly
        name = plan["layers"][0]["name"]
        assert f"{name}.0.weight" in sd and f"{name}.1.weight" in sd
        again = apply_plan(small_resnet(7), f"{out}.plan.json")
        again.load_state_dict(sd)
        assert rel(forward(again), forward(rebuilt)) == 0


def test_preset_arch(tmp_path: Path) -> None:
    from dsconv_cli.presets import get_preset
    from dsconv_cli.torch_backend.build import build_preset

    m = build_preset(get_preset("mobilenet_v2", resolution=64, classes=5))
    torch.save(m.state_dict(), tmp_path / "v2.pt")
    r = run(tmp_path / "v2.pt", "--dry-run", "--arch", "mobilenet_v2", "--arch-kwargs",
            '{"classes": 5, "resolution": 64}', "--min-channels", "1", "--allow-larger",
            "--input-shape", "1,3,64,64", "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["totals"]["converted"] >= 1  # the stem's 3x3 conv (the rest is depthwise/1x1)


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    src = tmp_path / "evil.pt"
    torch.save({"weights": Evil()}, src)
    r = run(src, "-o", tmp_path / "o.pt")
    assert r.exit_code == 2 and "--trust-pickle" in r.stderr
    assert not marker.exists()  # its code did not run
    assert not (tmp_path / "o.pt").exists()
    # and a plain pickle (not a torch zip) is refused the same way
    src2 = tmp_path / "evil2.pt"
    src2.write_bytes(pickle.dumps(Evil()))
    r = run(src2, "-o", tmp_path / "o.pt")
    assert r.exit_code == 2 and not marker.exists()


def test_write_failure_keeps_old_output(mobilenet_file: tuple[nn.Module, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, src = mobilenet_file
    out = tmp_path / "o.pt"
    out.write_bytes(b"old output")
    import dsconv_cli.atomic as atomic

    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *a: Any) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))
    r = run(src, "-o", out, "--trust-pickle", "--force")
    assert r.exit_code != 0
    assert out.read_bytes() == b"old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mobilenet.pt", "o.pt"]


def test_dry_run_and_nothing_to_convert(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1))
    src = tmp_path / "small.pt"
    torch.save(m, src)
    out = tmp_path / "o.pt"
    r = run(src, "-o", out, "--trust-pickle")
    assert r.exit_code == 0 and not out.exists()
    assert "No eligible layer" in r.stdout
    r = run(src, "-o", out, "--trust-pickle", "--write-unchanged")
    assert r.exit_code == 0 and out.exists()
    out2 = tmp_path / "o2.pt"
    r = run(src, "-o", out2, "--trust-pickle", "--dry-run", "--min-channels", "1")
    assert r.exit_code == 0 and not out2.exists() and "converted" in r.stdout


def test_energy_max_error_include_exclude(mobilenet_file: tuple[nn.Module, Path]) -> None:
    _, src = mobilenet_file
    r = run(src, "--dry-run", "--trust-pickle", "--energy", "0.9", "--allow-larger", "--json")
    assert r.exit_code == 0, r.stderr
    for la in json.loads(r.stdout)["cases"][0]["layers"]:
        if la["status"] == "converted":
            assert la["energy"] >= 0.9 - 1e-9
            assert la["weight_error"] == pytest.approx((1 - la["energy"]) ** 0.5, abs=1e-6)
    r = run(src, "--dry-run", "--trust-pickle", "--max-error", "0.01", "--json")
    layers = json.loads(r.stdout)["cases"][0]["layers"]
    assert any("--max-error" in la["reason"] for la in layers)
    assert not any(la["status"] == "converted" for la in layers)
    r = run(src, "--dry-run", "--trust-pickle", "--include", "blocks.2.*", "--exclude",
            "*.same", "--json")
    conv = [la["name"] for la in json.loads(r.stdout)["cases"][0]["layers"]
            if la["status"] == "converted"]
    assert conv == ["blocks.2.dil", "blocks.2.grp"]


def test_no_input_shape_says_not_verified(mobilenet_file: tuple[nn.Module, Path]) -> None:
    _, src = mobilenet_file
    r = run(src, "--dry-run", "--trust-pickle")
    assert r.exit_code == 0 and "not verified" in r.stdout


def _zip(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("notes.txt", "not a model")
    return p


def _torchscript(p: Path) -> Path:
    torch.jit.script(nn.Conv2d(3, 3, 3)).save(str(p))
    return p


def _file(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


BAD: list[tuple[str, Any, str]] = [
    ("missing", lambda d: d / "nope.pt", "no such file"),
    ("empty", lambda d: _file(d / "e.pt", b""), "empty"),
    ("text", lambda d: _file(d / "t.pt", b"hello"), "not a"),
    ("random", lambda d: _file(d / "r.pt", os.urandom(4096)), "not a"),
    ("zip", lambda d: _zip(d / "z.pt"), "not a"),
    ("folder", lambda d: d, "is a folder, not a regular file"),
    ("torchscript", lambda d: _torchscript(d / "ts.pt"), "TorchScript"),
]


@pytest.mark.parametrize("name,make,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_files_exit_2(tmp_path: Path, name: str, make: Any, needle: str) -> None:
    src = make(tmp_path)
    out = tmp_path / "out.pt"
    r = run(src, "-o", out)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_truncated_file_exit_2(mobilenet_file: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, src = mobilenet_file
    cut = tmp_path / "cut.pt"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    r = run(cut, "-o", tmp_path / "o.pt", "--trust-pickle")
    assert r.exit_code == 2 and "Traceback" not in r.output and "cut.pt" in r.stderr


@pytest.fixture
def sd_file(tmp_path: Path) -> Path:
    p = tmp_path / "sd.pt"
    torch.save(small_resnet().state_dict(), p)
    return p


@pytest.mark.parametrize("args,needle", [
    ([], "--arch"),
    (["--arch", "nosuchmodule_xyz:build"], "--arch"),
    (["--arch", "tests.models:nope"], "--arch"),
    (["--arch", "tests/models.py:MobileNetLike"], "does not match"),
    (["--arch", "tests.models:small_resnet", "--arch-kwargs", "{bad"], "--arch-kwargs"),
    (["--arch", "tests.models:small_resnet", "--arch-kwargs", "[1]"], "--arch-kwargs"),
    (["--arch", "tests.models:small_resnet", "--arch-kwargs", '{"classes": 3}'], "fc.weight"),
    (["--arch", "tests.models:small_resnet", "--input-shape", "1,3,x"], "--input-shape"),
    (["--arch", "tests.models:small_resnet", "--input-shape", "1,5,32,32"], "--input-shape"),
    (["--arch", "tests.models:small_resnet", "--state-dict-key", "model"], "--state-dict-key"),
    (["--arch", "tests.models:small_resnet", "--energy", "1.5"], "--energy"),
    (["--arch", "tests.models:small_resnet", "--map-location", "tpu9"], "--map-location"),
])
def test_bad_arguments_exit_2(sd_file: Path, tmp_path: Path, args: list[str],
                              needle: str) -> None:
    out = tmp_path / "out.pt"
    r = run(sd_file, "-o", out, *args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and "Traceback" not in r.output
    assert not out.exists() and not Path(f"{out}.plan.json").exists()


def test_output_rules(sd_file: Path, tmp_path: Path) -> None:
    arch = ["--arch", "tests.models:small_resnet"]
    r = run(sd_file, "-o", sd_file, *arch, "--force")
    assert r.exit_code == 2 and "is also the input" in r.stderr
    r = run(sd_file, "-o", tmp_path / "missing" / "o.pt", *arch)
    assert r.exit_code == 2 and "does not exist" in r.stderr
    existing = tmp_path / "o.pt"
    existing.write_bytes(b"keep me")
    r = run(sd_file, "-o", existing, *arch)
    assert r.exit_code == 2 and "--force" in r.stderr and existing.read_bytes() == b"keep me"
    r = run(sd_file, "-o", existing, *arch, "--force")
    assert r.exit_code == 0 and existing.read_bytes() != b"keep me"
    r = run(sd_file, *arch)
    assert r.exit_code == 2 and "--output" in r.stderr


def test_installed_script_converts(tmp_path: Path) -> None:
    src, out = tmp_path / "m.pt", tmp_path / "o.pt"
    torch.save(small_resnet().state_dict(), src)
    env = {**os.environ, "DSCONV_WIDTH": "160", "NO_COLOR": "1",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    p = subprocess.run([sys.executable, "-m", "dsconv_cli", "convert", str(src), "-o", str(out),
                        "--arch", "tests.models:small_resnet", "--input-shape", SHAPE],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "converted" in p.stdout and out.exists()
    assert zipfile.is_zipfile(out)


# ------------------------------------------------------------ fidelity that cannot mislead

class Tripwire(nn.Module):
    """Logits that turn NaN as soon as ``a`` computes anything but what ``ref`` (its
    twin, kept out of the conversion) computes; the original predicts class 0 for every
    input (a large bias), so NaN rows argmax to the same class as the original's."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(32, 32, 3, padding=1)
        self.ref = nn.Conv2d(32, 32, 3, padding=1)
        self.ref.load_state_dict(self.a.state_dict())
        self.fc = nn.Linear(32, 4)
        with torch.no_grad():
            self.fc.bias[0] = 100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((self.a(x) - self.ref(x)) ** 2).mean(dim=(1, 2, 3))
        return self.fc(x.mean(dim=(2, 3))) + torch.log1p(-1e12 * d)[:, None]


class Wide(nn.Module):
    """Random convs whose logits read every position: the original's predictions spread
    over the classes, and a rank-1 conversion changes most of them."""

    def __init__(self, bias0: float = 0.0) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(32, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 16, 10)
        with torch.no_grad():
            self.fc.bias[0] = bias0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).flatten(1))


def _save(tmp_path: Path, model: nn.Module, n: int = 64) -> tuple[Path, Path, Path]:
    torch.manual_seed(0)
    src, cal, ev = tmp_path / "m.pt", tmp_path / "cal.pt", tmp_path / "eval.pt"
    torch.save(model, src)
    torch.save(torch.randn(n, 32, 4, 4, generator=torch.Generator().manual_seed(1)), cal)
    torch.save(torch.randn(n, 32, 4, 4, generator=torch.Generator().manual_seed(2)), ev)
    return src, cal, ev


def test_nan_output_fails_every_fidelity_gate(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src, _, ev = _save(tmp_path, Tripwire())
    out = tmp_path / "o.pt"
    base = [src, "--trust-pickle", "-o", out, "--exclude", "ref"]
    r = run(*base, "--eval-data", ev, "--max-output-error", "0.01")
    assert r.exit_code == 1 and not out.exists()
    assert "relative output error is nan (not finite)" in r.stderr, r.stderr
    r = run(*base, "--eval-data", ev, "--min-agreement", "0.99", "--json")
    assert r.exit_code == 1 and not out.exists()
    case = json.loads(r.stdout)["cases"][0]
    validate_report(json.loads(r.stdout))
    fid = case["fidelity"]
    # NaN rows argmax to class 0, the original's class for every input: they must not agree
    assert fid["agreement"] == 0.0 and fid["rel_output_error"] is None
    assert fid["majority_class_share"] == 1.0 and fid["agreement_meaningful"] is False
    assert "below --min-agreement" in r.stderr and case["written"] == []
    r = run(*base, "--input-shape", "2,32,4,4", "--max-output-error", "0.5")  # no data
    assert r.exit_code == 1 and "not finite" in r.stderr and not out.exists()


def test_low_fidelity_warns_with_or_without_calibration(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src, cal, ev = _save(tmp_path, Wide(), n=128)
    base = [src, "--trust-pickle", "--dry-run", "--eval-data", ev, "--json"]
    r = run(*base)
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    fid = case["fidelity"]
    assert fid["majority_class_share"] < 0.9 and fid["agreement_meaningful"] is True
    assert fid["agreement"] < 0.9 and fid["rel_output_error"] > 0.1  # what the model gives
    assert f"top-1 agreement on the eval inputs (n=128) is {100 * fid['agreement']:.1f}%" \
        in r.stderr
    assert "relative output error on the eval inputs (n=128)" in r.stderr
    assert len(case["warnings"]) == 3 and all(w in r.stderr for w in case["warnings"])
    r = run(*base, "--calibration-data", cal)
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    err = case["fidelity"]["rel_output_error"]
    assert err > 0.1  # a rank-1 form of random 3x3 kernels stays far off, refitted or not
    assert f"relative output error on the eval inputs (n=128) is {err:.3f}" in r.stderr


def test_one_class_agreement_is_not_meaningful(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src, _, ev = _save(tmp_path, Wide(bias0=1e4))
    r = run(src, "--trust-pickle", "--dry-run", "--eval-data", ev, "--json",
            "--depth-multiplier", "9", "--allow-larger")
    assert r.exit_code == 0, r.stderr
    fid = json.loads(r.stdout)["cases"][0]["fidelity"]
    assert fid["agreement"] == 1.0 and fid["majority_class_share"] == 1.0
    assert fid["agreement_meaningful"] is False
    assert "is not meaningful: the original model puts 100% of them in one class" in r.stderr
    r = run(src, "--trust-pickle", "--dry-run", "--eval-data", ev, "--depth-multiplier", "9",
            "--allow-larger")
    assert "agreement 100.00% (not meaningful: the original puts 100% in one class)" in \
        " ".join(r.stdout.split()), r.stdout


# ------------------------------------------------------------ user code never decides the exit

class Rude(nn.Module):
    """Raises ``what`` from its forward on batches of more than ``over`` inputs, or from
    ``deepcopy``."""

    def __init__(self, what: str, over: int = 1) -> None:
        super().__init__()
        self.what, self.over = what, over
        self.conv = nn.Conv2d(32, 32, 3, padding=1)

    def _raise(self) -> None:
        if self.what == "exit":
            raise SystemExit(0)
        if self.what == "interrupt":
            raise KeyboardInterrupt
        if self.what == "sigint":  # the user's own Ctrl-C, arriving mid-forward
            import signal

            signal.raise_signal(signal.SIGINT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.over:
            self._raise()
        return self.conv(x)

    def __deepcopy__(self, memo: Any) -> Any:
        if self.over < 0:
            self._raise()
        return Rude(self.what, self.over)


@pytest.mark.parametrize("what,over,needle", [
    ("exit", 1, "while calibrating: SystemExit: 0"),
    ("interrupt", 1, "while calibrating: KeyboardInterrupt"),
    ("exit", -1, "copying the model (deepcopy): SystemExit"),
    ("interrupt", -1, "copying the model (deepcopy): KeyboardInterrupt"),
    ("interrupt", 0, "KeyboardInterrupt"),  # the first (verification) forward
])
@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
def test_user_code_never_decides_the_exit_code(tmp_path: Path, what: str, over: int,
                                               needle: str) -> None:
    src, cal, _ = _save(tmp_path, Rude(what, over))
    out = tmp_path / "o.pt"
    r = run(src, "--trust-pickle", "-o", out, "--calibration-data", cal)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    errors = [line for line in r.stderr.splitlines() if not line.startswith("Warning:")]
    assert len(errors) == 1 and errors[0].startswith("Error:"), r.stderr
    assert needle in errors[0] and str(src) in errors[0] and not out.exists()


@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
def test_a_real_ctrl_c_in_user_code_still_exits_130(tmp_path: Path) -> None:
    src, cal, _ = _save(tmp_path, Rude("sigint"))
    out = tmp_path / "o.pt"
    r = run(src, "--trust-pickle", "-o", out, "--calibration-data", cal)
    assert r.exit_code == 130 and not out.exists()
