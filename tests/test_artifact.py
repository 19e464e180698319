"""The converted model is an artifact: dsconv reads what it writes (plans applied on load,
conversions compose), exports that deploy without dsconv or the model's code (checked, in
a subprocess that can import neither), and budgets that never grow a layer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from dsconv_cli import apply_plan
from dsconv_cli.cli import app
from dsconv_cli.errors import InputError
from dsconv_cli.plan import ConvFacts, largest_smaller, ranks_for_budget

ROOT = Path(__file__).parents[1]
DSCONV = Path(sys.executable).with_name("dsconv")
runner = CliRunner()
SHAPE = (1, 3, 16, 16)
SHAPE_ARG = "1,3,16,16"

#: the user's model code: importing it leaves a marker, so a test sees whether it ran
NET_SRC = '''
import pathlib

import torch
from torch import nn

pathlib.Path(__file__).with_name("imported.marker").write_text("imported")


class Net(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.a = nn.Conv2d(32, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x))
        return self.head(x.mean((2, 3)))
'''


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def user_net(folder: Path) -> tuple[Any, Path]:
    """``mynet.py`` (the user's code) and a state_dict of its ``Net`` in ``folder``."""
    (folder / "mynet.py").write_text(NET_SRC)
    ns: dict[str, Any] = {"__file__": str(folder / "mynet.py")}
    exec(compile(NET_SRC, str(folder / "mynet.py"), "exec"), ns)
    torch.manual_seed(0)
    sd = folder / "sd.pt"
    torch.save(ns["Net"]().state_dict(), sd)
    (folder / "imported.marker").unlink()
    return ns["Net"], sd


def out_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def x_in() -> torch.Tensor:
    return torch.randn(*SHAPE, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------- 1. dsconv reads what it writes

@pytest.fixture
def converted(tmp_path: Path) -> tuple[Any, Path, Path]:
    """``Net`` converted in its layer ``a`` only: the state_dict, its plan beside it."""
    net, sd = user_net(tmp_path)
    out = tmp_path / "c1.pt"
    r = run("convert", sd, "--arch", f"{tmp_path}/mynet.py:Net", "-o", out, "--input-shape",
            SHAPE_ARG, "--include", "a", "--min-channels", "1")
    assert r.exit_code == 0, r.stderr
    (tmp_path / "imported.marker").unlink()
    return net, sd, out


def test_compare_reads_a_converted_state_dict_through_its_plan(
        converted: tuple[Any, Path, Path], tmp_path: Path) -> None:
    net, _, out = converted
    arch = f"{tmp_path}/mynet.py:Net"
    r = run("compare", "--model", out, "--arch", arch, "--input-shape", SHAPE_ARG, "--json")
    assert r.exit_code == 0, r.stderr
    assert "applied" in r.stderr and "c1.pt.plan.json" in r.stderr  # said so
    # what dsconv counted is the DS model: torch's own count of the rebuilt model
    rebuilt = apply_plan(net(), json.loads(Path(f"{out}.plan.json").read_text()))
    rebuilt.load_state_dict(torch.load(out, weights_only=True))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        rebuilt(x_in())
    assert json.loads(r.stdout)["cases"][0]["totals"]["macs"] == fc.get_total_flops() // 2


def test_a_plan_beside_a_whole_pickled_model_is_named_not_applied(
        converted: tuple[Any, Path, Path], tmp_path: Path) -> None:
    _, _, out = converted
    whole = tmp_path / "whole.pt"
    model = nn.Sequential(nn.Conv2d(SHAPE[1], 8, 3), nn.ReLU()).eval()
    torch.save(model, whole)  # a plan for another model: applying it would fail
    Path(f"{whole}.plan.json").write_text(Path(f"{out}.plan.json").read_text())
    r = run("compare", "--model", whole, "--trust-pickle", "--input-shape", SHAPE_ARG,
            "--json")
    assert r.exit_code == 0, r.stderr
    assert "whole.pt.plan.json not applied" in r.stderr
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x_in())
    assert json.loads(r.stdout)["cases"][0]["totals"]["macs"] == fc.get_total_flops() // 2


def test_a_plan_never_grants_trust_to_the_code_it_names(
        converted: tuple[Any, Path, Path], tmp_path: Path) -> None:
    """The plan records --arch mynet.py:Net; without --arch on the command line that code
    is not imported (no marker), exit 2 with one line saying how to allow it."""
    _, _, out = converted
    r = run("compare", "--model", out, "--input-shape", SHAPE_ARG)
    assert r.exit_code == 2
    assert "a plan file cannot grant that itself" in r.stderr and "--arch" in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "imported.marker").exists()


def test_a_plan_that_records_a_preset_makes_arch_optional(tmp_path: Path) -> None:
    from dsconv_cli.presets import get_preset
    from dsconv_cli.torch_backend.build import build_preset

    kwargs = {"classes": 5, "resolution": 64}
    torch.manual_seed(0)
    m = build_preset(get_preset("mobilenet_v2", **kwargs))
    torch.save(m.state_dict(), tmp_path / "v2.pt")
    out = tmp_path / "v2_ds.pt"
    r = run("convert", tmp_path / "v2.pt", "--arch", "mobilenet_v2", "--arch-kwargs",
            json.dumps(kwargs), "-o", out, "--input-shape", "1,3,64,64", "--min-channels",
            "1", "--allow-larger")  # the stem's 3x3 conv (the rest is depthwise or 1x1)
    assert r.exit_code == 0, r.stderr
    r = run("compare", "--model", out, "--input-shape", "1,3,64,64", "--json")
    assert r.exit_code == 0, r.stderr
    assert "mobilenet_v2" in r.stderr  # the note: built the architecture the plan records
    plan = json.loads(Path(f"{out}.plan.json").read_text())
    assert plan["layers"]
    rebuilt = apply_plan(build_preset(get_preset("mobilenet_v2", **kwargs)), plan)
    rebuilt.load_state_dict(torch.load(out, weights_only=True))
    params = sum(p.numel() for p in rebuilt.parameters())
    assert json.loads(r.stdout)["cases"][0]["totals"]["params"] == params


def test_converting_a_converted_model_composes_the_plans(
        converted: tuple[Any, Path, Path], tmp_path: Path) -> None:
    net, sd, out = converted
    arch = f"{tmp_path}/mynet.py:Net"
    out2 = tmp_path / "c2.pt"
    r = run("convert", out, "--arch", arch, "-o", out2, "--input-shape", SHAPE_ARG,
            "--include", "b", "--json")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(Path(f"{out2}.plan.json").read_text())
    assert [la["name"] for la in plan["layers"]] == ["a", "b"]
    assert plan["arch"]["arch"] == arch  # carried over
    # the one plan rebuilds both conversions on the bare architecture: strict load
    twice = apply_plan(net(), plan)
    twice.load_state_dict(torch.load(out2, weights_only=True))
    assert isinstance(twice.a, nn.Sequential) and isinstance(twice.b, nn.Sequential)
    # the second conversion left layer a as the first one wrote it
    once = apply_plan(net(), json.loads(Path(f"{out}.plan.json").read_text()))
    once.load_state_dict(torch.load(out, weights_only=True))
    for k, v in once.a.state_dict().items():
        assert torch.equal(v, twice.a.state_dict()[k])
    # and what was converted twice is still close to the original model
    orig = net()
    orig.load_state_dict(torch.load(sd, weights_only=True))
    x = x_in()
    y0, y2 = out_of(orig, x), out_of(twice, x)
    assert float((y2 - y0).norm() / y0.norm()) < 0.5


def test_profile_model_and_vs_read_converted_files(converted: tuple[Any, Path, Path],
                                                   tmp_path: Path) -> None:
    _, sd, out = converted
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("timing: {min_time: 0.01, warmup: 1}\ncases:\n  - name: a\n    model: "
                   f"{{path: {out.name}, arch: 'mynet.py:Net', input_shape: [1, 3, 16, 16], "
                   f"vs: {{path: {out.name}, arch: 'mynet.py:Net'}}}}\n")
    r = run("profile", cfg, "--trust-code", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["cases"][0]["verdict"] != "error"


@pytest.mark.parametrize("bad,field", [(10**6, "depth_multiplier"), (-1, "depth_multiplier"),
                                       ("2", "depth_multiplier"), (True, "depth_multiplier")])
def test_bad_plans_are_refused_before_any_tensor(converted: tuple[Any, Path, Path],
                                                 tmp_path: Path, bad: Any, field: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    net, _, out = converted
    plan_file = Path(f"{out}.plan.json")
    plan = json.loads(plan_file.read_text())
    plan["layers"][0][field] = bad
    plan_file.write_text(json.dumps(plan))
    arch = f"{tmp_path}/mynet.py:Net"
    r = run("compare", "--model", out, "--arch", arch, "--input-shape", SHAPE_ARG)
    assert r.exit_code == 2 and field in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) <= 2  # the error line (and a hint)
    with pytest.raises(ValueError, match=field):
        apply_plan(net(), plan)
    # checked before the state_dict is read: nothing is unpickled or built
    from dsconv_cli.torch_backend import loading

    def no_load(*a: Any, **k: Any) -> None:
        raise AssertionError("torch.load ran before the plan was checked")

    monkeypatch.setattr(loading.torch, "load", no_load)
    with pytest.raises(InputError, match=field):
        loading.load_model(out, arch=arch)


def test_a_plan_that_is_a_fifo_is_refused_not_read(converted: tuple[Any, Path, Path],
                                                   tmp_path: Path) -> None:
    _, _, out = converted
    Path(f"{out}.plan.json").unlink()
    os.mkfifo(f"{out}.plan.json")  # reading it would block forever
    r = run("compare", "--model", out, "--arch", f"{tmp_path}/mynet.py:Net", "--input-shape",
            SHAPE_ARG)
    assert r.exit_code == 2 and "FIFO" in r.stderr


def test_a_plan_above_the_kernels_rank_is_refused(converted: tuple[Any, Path, Path]) -> None:
    net, _, out = converted
    plan = json.loads(Path(f"{out}.plan.json").read_text())
    plan["layers"][0]["depth_multiplier"] = 10  # a 3x3 kernel has rank 9 at most
    with pytest.raises(ValueError, match="above the conv's rank 9"):
        apply_plan(net(), plan)


def test_a_converted_state_dict_without_its_plan_says_what_is_missing(
        converted: tuple[Any, Path, Path], tmp_path: Path) -> None:
    _, _, out = converted
    Path(f"{out}.plan.json").unlink()
    r = run("compare", "--model", out, "--arch", f"{tmp_path}/mynet.py:Net", "--input-shape",
            SHAPE_ARG)
    assert r.exit_code == 2 and "plan.json" in r.stderr


# ------------------------------------------------------------------------ 2. --export

#: what the subprocess runs before a README recipe: dsconv and the model's code must not
#: be importable (``-I`` drops the working folder; the editable install's folder goes too)
ISOLATE = textwrap.dedent('''
    import importlib.util, os, sys
    sys.path[:] = [p for p in sys.path if not os.path.exists(os.path.join(p, "dsconv_cli"))]
    assert importlib.util.find_spec("dsconv_cli") is None, "dsconv is importable"
    for code in ("mynet", "mymodel"):
        assert importlib.util.find_spec(code) is None, "the model code is importable"
''')


def readme_recipe(marker: str) -> str:
    """The README's python block that starts with ``# <marker>``."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if b.startswith(f"# {marker}")]
    assert len(found) == 1, f"README has no single python block starting '# {marker}'"
    return found[0]


def run_recipe(folder: Path, marker: str, tail: str, isolated: bool = True) -> np.ndarray:
    """A README recipe in a fresh interpreter in ``folder`` (isolated: neither dsconv nor
    the model code importable), fed the saved input; returns what it computed."""
    code = readme_recipe(marker).replace("1, 3, 224, 224", ", ".join(map(str, SHAPE)))
    np.save(folder / "x.npy", x_in().numpy())
    args = ["-I", "-c", ISOLATE + code] if isolated else ["-c", code]
    p = subprocess.run([sys.executable, *args[:-1], args[-1] + textwrap.dedent(tail)],
                       cwd=folder, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return np.load(folder / "y.npy")


def rebuilt(net: Any, out: Path) -> nn.Module:
    model = apply_plan(net(), json.loads(Path(f"{out}.plan.json").read_text()))
    model.load_state_dict(torch.load(out, weights_only=True))
    return model


def test_export_pt2_from_the_installed_command_deploys_without_dsconv(
        tmp_path: Path) -> None:
    net, sd = user_net(tmp_path)
    p = subprocess.run([str(DSCONV), "convert", "sd.pt", "--arch", "mynet.py:Net", "-o",
                        "mynet_ds.pt", "--export", "mynet_ds.pt2", "--input-shape", SHAPE_ARG,
                        "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_COLOR": "1"})
    assert p.returncode == 0, p.stderr
    export = json.loads(p.stdout)["cases"][0]["export"]
    size = (tmp_path / "mynet_ds.pt2").stat().st_size
    assert export["format"] == "torch.export" and export["bytes"] == size
    assert export["checked"] and export["max_abs_diff"] <= export["tolerance"]
    y = run_recipe(tmp_path, "deploy: .pt2", '''
        import numpy
        numpy.save("y.npy", model(torch.from_numpy(numpy.load("x.npy"))).detach().numpy())
    ''')
    want = out_of(rebuilt(net, tmp_path / "mynet_ds.pt"), x_in()).numpy()
    assert np.abs(y - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_export_onnx_runs_in_onnx_runtime_without_dsconv(tmp_path: Path) -> None:
    net, sd = user_net(tmp_path)
    r = run("convert", sd, "--arch", f"{tmp_path}/mynet.py:Net", "-o", tmp_path / "mynet_ds.pt",
            "--export", tmp_path / "mynet_ds.onnx", "--input-shape", SHAPE_ARG, "--json")
    assert r.exit_code == 0, r.stderr
    export = json.loads(r.stdout)["cases"][0]["export"]
    assert export["format"] == "onnx" and export["bytes"] == (
        tmp_path / "mynet_ds.onnx").stat().st_size
    y = run_recipe(tmp_path, "deploy: .onnx", '''
        import numpy
        (y,) = sess.run(None, {sess.get_inputs()[0].name: numpy.load("x.npy")})
        numpy.save("y.npy", y)
    ''')
    want = out_of(rebuilt(net, tmp_path / "mynet_ds.pt"), x_in()).numpy()
    assert np.abs(y - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    # the third output, state_dict + plan, as the README loads it (dsconv and the code)
    (tmp_path / "mymodel.py").write_text(NET_SRC + "\n\nMyNet = Net\n")
    y = run_recipe(tmp_path, "state_dict + plan", '''
        import numpy
        with torch.no_grad():
            y = model.eval()(torch.from_numpy(numpy.load("x.npy")))
        numpy.save("y.npy", y.numpy())
    ''', isolated=False)
    assert np.abs(y - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


class Drifting(nn.Module):
    """Each call adds its call count: an export bakes in the count it saw, so the artifact
    computes something else than the model (the check must catch it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x) + self.calls


class Branchy(nn.Module):
    """Data-dependent control flow: ``torch.export`` cannot take it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if float(y.sum()) > 0 else -y


@pytest.mark.parametrize("model,suffix,why", [(Drifting, ".pt2", "differs"),
                                              (Drifting, ".onnx", "differs"),
                                              (Branchy, ".pt2", "failed")])
def test_a_failing_export_writes_nothing(tmp_path: Path, model: Any, suffix: str,
                                         why: str) -> None:
    torch.save(model(), tmp_path / "m.pt")
    out, export = tmp_path / "o.pt", tmp_path / f"o{suffix}"
    r = run("convert", tmp_path / "m.pt", "--trust-pickle", "-o", out, "--export", export,
            "--input-shape", "1,32,8,8")
    assert r.exit_code == 1 and why in r.stderr, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no model, no temp file


def test_export_path_is_checked_like_an_output(tmp_path: Path) -> None:
    net, sd = user_net(tmp_path)
    base = ["convert", sd, "--arch", f"{tmp_path}/mynet.py:Net", "-o", tmp_path / "o.pt",
            "--input-shape", SHAPE_ARG]
    (tmp_path / "old.onnx").write_text("keep me")
    for export, what in ((tmp_path / "old.onnx", "exists"), (tmp_path / "o.tflite", ".pt2"),
                         (sd, "MODEL"), (tmp_path / "o.pt", "--output")):
        r = run(*base, "--export", export)
        assert r.exit_code == 2 and what in r.stderr, (export, r.output)
    assert (tmp_path / "old.onnx").read_text() == "keep me"
    assert not (tmp_path / "o.pt").exists()
    r = run(*base[:-2], "--export", tmp_path / "o.onnx")  # no input shape to export for
    assert r.exit_code == 2 and "--input-shape" in r.stderr


# ----------------------------------------------------------- 3. budgets never grow a layer

def facts_64(shape: tuple[int, ...] = (1, 64, 8, 8), name: str = "c") -> ConvFacts:
    """A 64->64 3x3 conv without bias: 36,864 params; its DS form at multiplier m has
    9*64*m + 64*m*64 = 4,672m params, so m = 7 (32,704) is the largest that is smaller."""
    energy = tuple(min(1.0, (m + 1) / 9) for m in range(9))
    return ConvFacts(name, 64, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False,
                     input_shape=shape, energy_by_rank=energy)


def test_the_largest_multiplier_that_shrinks_a_64_to_64_conv_is_7() -> None:
    f = facts_64()
    assert f.max_rank == 9 and largest_smaller(f) == 7
    # 64 -> 1: the conv has 576 params, the DS form 9*64 + 64 = 640 at m = 1
    tiny = ConvFacts("t", 64, 1, (3, 3), (1, 1), (1, 1), (1, 1), 1, False,
                     input_shape=(1, 64, 8, 8))
    assert largest_smaller(tiny) == 0


def test_the_budget_holds_a_layer_below_its_size_and_spends_elsewhere() -> None:
    big, other = facts_64(name="big"), facts_64(name="other")
    conv_macs = 36_864 * 64  # 2,359,296 per conv at 8x8 out
    model = 2 * conv_macs
    ds = 4_672 * 64  # MACs per unit of multiplier
    # room for 15 multiplier units: m = 8 in either layer would fit the budget, but make
    # that layer larger than its conv: both are held at 7, and say why
    budget = ranks_for_budget([big, other], model, 15 * ds)
    assert budget.ranks == {"big": 7, "other": 7}
    assert set(budget.notes) == {"big", "other"}
    assert all("held at depth multiplier 7" in n for n in budget.notes.values())
    tight = ranks_for_budget([big, other], model, 14 * ds)  # m = 8 would not fit anyway
    assert tight.ranks == {"big": 7, "other": 7} and tight.notes == {}
    # a smaller budget: each step goes where it removes the most error per MAC
    assert sum(ranks_for_budget([big, other], model, 9 * ds).ranks.values()) == 9
    # with --allow-larger the same budget buys the exact rank 9 where it fits
    larger = ranks_for_budget([big, other], model, 16 * ds, allow_larger=True)
    assert sorted(larger.ranks.values()) == [7, 9]


def test_nothing_eligible_says_so() -> None:
    with pytest.raises(ValueError, match="no Conv2d layer is eligible") as e:
        ranks_for_budget([], 1000, 500)
    assert "even at depth multiplier 1" not in str(e.value)
    tiny = ConvFacts("t", 64, 1, (3, 3), (1, 1), (1, 1), (1, 1), 1, False,
                     input_shape=(1, 64, 8, 8))
    with pytest.raises(ValueError, match="is smaller in the DS form"):
        ranks_for_budget([tiny], 36_864, 100)
    assert ranks_for_budget([], 1000, 2000).ranks == {}  # already fits: nothing to do


def grower(tmp_path: Path) -> Path:
    """A 64->64 3x3 conv (shrinks up to m = 7) and a 64->1 3x3 conv (never shrinks)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.ReLU(),
                      nn.Conv2d(64, 1, 3, padding=1, bias=False))
    torch.save(m, tmp_path / "g.pt")
    return tmp_path / "g.pt"


def test_target_macs_keeps_the_conv_where_ds_is_larger_and_says_so(tmp_path: Path) -> None:
    """A budget of 3,000,000 MACs (the model has 2,359,296 + 36,864) would afford m = 8
    for the 64->64 conv, which is larger than the conv: held at 7, said in its note; the
    64->1 conv is larger in the DS form at any multiplier: kept, said in its reason."""
    out = tmp_path / "o.pt"
    r = run("convert", grower(tmp_path), "--trust-pickle", "-o", out, "--input-shape",
            "1,64,8,8", "--min-channels", "1", "--target-macs", "3000000", "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    first, second = case["layers"]
    assert first["status"] == "converted" and first["rank"] == 7
    assert first["params_before"] == 36_864 and first["params_after"] == 7 * 4_672
    assert first["macs_before"] == 2_359_296 and first["macs_after"] == 7 * 4_672 * 64
    assert "held at depth multiplier 7" in first["note"]
    assert second["status"] == "skipped" and "kept the original conv" in second["reason"]
    assert "640 >= 576 params" in second["reason"]
    written = torch.load(out, weights_only=False)
    assert isinstance(written[0], nn.Sequential) and isinstance(written[2], nn.Conv2d)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        written(torch.randn(1, 64, 8, 8))
    assert fc.get_total_flops() // 2 == 7 * 4_672 * 64 + 36_864


def test_energy_that_asks_for_a_larger_layer_keeps_the_conv(tmp_path: Path) -> None:
    r = run("convert", grower(tmp_path), "--trust-pickle", "--dry-run", "--input-shape",
            "1,64,8,8", "--min-channels", "1", "--energy", "1.0", "--json")
    assert r.exit_code == 0, r.stderr
    first = json.loads(r.stdout)["cases"][0]["layers"][0]
    # full energy of a random 64->64 kernel needs rank 9: 42,048 params > 36,864
    assert first["rank"] == 9 and first["status"] == "skipped"
    assert "42,048 >= 36,864 params" in first["reason"]
    assert "kept the original conv" in first["reason"]


def test_target_macs_with_nothing_eligible_says_exactly_that(tmp_path: Path) -> None:
    r = run("convert", grower(tmp_path), "--trust-pickle", "--dry-run", "--input-shape",
            "1,64,8,8", "--min-channels", "128", "--target-macs", "0.5")
    assert r.exit_code == 1
    assert "no Conv2d layer is eligible for conversion" in r.stderr
    assert "even at depth multiplier 1" not in r.stderr
