"""The resume cache of the layer-wise refit (dsconv_cli/torch_backend/resume.py): each pass
resumes the converted model's Sequentials where the previous pass left them. It must give
the very results of the plain passes, skip the work it claims to, hold nothing it may not,
and leave the model as it found it."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from dsconv_cli.plan import PlanOptions
from dsconv_cli.torch_backend import resume
from dsconv_cli.torch_backend.calibrate import refit
from dsconv_cli.torch_backend.convert import ConvertOptions, convert_model
from dsconv_cli.torch_backend.loading import Loaded

from .models import ResNet

BIG = 1 << 30


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's: ReLU(inplace=True), a ``downsample`` Sequential, ``out += identity``."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv3(cout, cout), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TorchvisionResNet(nn.Module):
    """torchvision's layout: stem modules called one by one, ``layerN`` Sequentials."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3(3, 16), nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 24, 2), BasicBlock(24, 24))
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(conv3(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv_bn(c, 2 * c), nn.Sequential(
            nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def mobilenet_style() -> nn.Module:
    """A whole model that is a Sequential, ``features`` of nested Sequentials."""
    features = nn.Sequential(conv_bn(3, 16, 2), InvertedResidual(16), conv_bn(16, 24, 2),
                             InvertedResidual(24), InvertedResidual(24), conv_bn(24, 32))
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 5)))


class Twice(nn.Module):
    """One Sequential called three times in a forward: inside another one, then twice."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(16, 16), nn.ReLU(inplace=True), conv3(16, 16),
                                  nn.ReLU())
        self.outer = nn.Sequential(nn.Sequential(conv3(3, 16), nn.ReLU()), self.body,
                                   conv3(16, 16), nn.ReLU(inplace=True))
        self.tail = conv3(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.body(self.outer(x)))
        return self.head(torch.relu(self.tail(x)).mean((2, 3)))


class Indexed(nn.Module):
    """A forward that calls a Sequential's children one by one (never its forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(conv3(3, 16), nn.ReLU(), conv3(16, 16), nn.ReLU(inplace=True),
                                 conv3(16, 16), nn.ReLU(), conv3(16, 16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.seq)):
            x = self.seq[i](x)
        return self.head(x.mean((2, 3)))


class PreAct(nn.Module):
    """Writes its input in place (the previous block's output) and a converted layer's
    output (a pair's, resumed whole in later passes)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.c1, self.c2, self.c3 = conv3(c, c), conv3(c, c), conv3(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        y = self.c1(x)
        y += x
        return self.c3(self.act(self.c2(y)))


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv3(3, 16)
        self.body = nn.Sequential(PreAct(16), PreAct(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean((2, 3)))


class WritesItsInput(nn.Module):
    """A Sequential that starts with ``ReLU(inplace=True)`` inside a block that adds its
    input back: the caller sees the write (resuming past it would lose it)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv3(3, 16)
        self.body = nn.Sequential(nn.ReLU(inplace=True), conv3(16, 16), nn.BatchNorm2d(16),
                                  conv3(16, 16), conv3(16, 16))
        self.tail = conv3(16, 16)  # refitted on what the sum gives: after the write
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(self.tail(self.body(s) + s).mean((2, 3)))


class KeepsAFeatureWithAHook(nn.Module):
    """A U-Net built with hooks: a hook inside a Sequential keeps a feature that the
    forward reads after it (a skipped child would leave the last batch's)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv3(3, 16)
        self.body = nn.Sequential(conv3(16, 16), nn.ReLU(), conv3(16, 16), conv3(16, 16))
        self.tail = conv3(16, 16)  # refitted on the kept feature: after the Sequential
        self.head = nn.Linear(16, 5)
        self.feat: torch.Tensor | None = None
        self.body[1].register_forward_hook(self.keep)

    def keep(self, m: nn.Module, a: Any, out: torch.Tensor) -> None:
        self.feat = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(self.stem(x))
        assert self.feat is not None
        return self.head(self.tail(y + self.feat).mean((2, 3)))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "torchvision_resnet": TorchvisionResNet, "mobilenet_style": mobilenet_style,
    "sequential_called_twice": Twice, "indexed_children": Indexed, "in_place": InPlace,
    "writes_its_input": WritesItsInput, "hooks": KeepsAFeatureWithAHook}


def build(make: Callable[[], nn.Module]) -> tuple[nn.Module, nn.Module, list[str]]:
    """The original (batch norm statistics made non-trivial) and its conversion."""
    torch.manual_seed(0)
    original = make().eval()
    with torch.no_grad():
        for m in original.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    converted = copy.deepcopy(original)
    conv = convert_model(Loaded(converted, "module", "x"),
                         ConvertOptions(PlanOptions(min_channels=8), (1, 3, 16, 16)))
    names = [d.facts.name for d in conv.decisions if d.convert]
    assert len(names) >= 3, names
    return original, converted, names


def data(n: int = 24) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@contextlib.contextmanager
def no_cache(*a: Any, **k: Any) -> Iterator[None]:
    """refit's plain passes: no Sequential is touched."""
    yield None


def calibrate(monkeypatch: pytest.MonkeyPatch, models: tuple[nn.Module, nn.Module, list[str]],
              budget: int | None, refine_steps: int = 1
              ) -> tuple[dict[str, Any], dict[str, torch.Tensor], resume.SequentialCache | None]:
    """Refit copies of ``models`` with the cache in ``budget`` bytes (None: no cache at
    all); the errors, the converted weights, the cache used."""
    original, converted = copy.deepcopy(models[0]), copy.deepcopy(models[1])
    used: list[resume.SequentialCache] = []
    real = resume.sequential_cache

    @contextlib.contextmanager
    def spy(*a: Any, **k: Any) -> Iterator[resume.SequentialCache]:
        with real(*a, **k) as cache:
            used.append(cache)
            yield cache

    with monkeypatch.context() as mp:
        mp.setattr(resume, "sequential_cache", no_cache if budget is None else spy)
        errs = refit(original, converted, models[2], data(), 8, refine_steps=refine_steps,
                     resume_budget=budget)
    assert len(used) == (budget is not None)
    return errs, converted.state_dict(), used[0] if used else None


def assert_same(a: tuple[dict[str, Any], dict[str, torch.Tensor], Any],
                b: tuple[dict[str, Any], dict[str, torch.Tensor], Any]) -> None:
    assert a[0].keys() == b[0].keys()
    for name, row in a[0].items():
        assert row.keys() == b[0][name].keys()
        for k, v in row.items():
            assert v == pytest.approx(b[0][name][k], abs=2e-6), (name, k)
    for k, t in a[1].items():
        assert torch.allclose(t, b[1][k], rtol=1e-6, atol=1e-7), k


@pytest.mark.parametrize("kind", MODELS)
def test_the_cache_changes_no_result(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    models = build(MODELS[kind])
    plain = calibrate(monkeypatch, models, None)
    cached = calibrate(monkeypatch, models, BIG)
    cache = cached[2]
    assert cache is not None and cache.stores > 0 and cache.resumes > 0 and cache.skipped > 0
    assert 0 < cache.peak <= BIG and cache.used == 0 and cache.off  # dropped on exit
    assert_same(cached, plain)
    # the refit did refit: the weights moved from the SVD start
    assert any(not torch.equal(t, models[1].state_dict()[k]) for k, t in plain[1].items())


@pytest.mark.parametrize("budget", [0, 16 * 16 * 16 * 4 * 8])
def test_a_small_budget_stores_less_and_changes_nothing(
        budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    models = build(TorchvisionResNet)
    plain = calibrate(monkeypatch, models, None)
    cached = calibrate(monkeypatch, models, budget)
    full = calibrate(monkeypatch, models, BIG)
    cache, big = cached[2], full[2]
    assert cache is not None and big is not None
    assert cache.peak <= budget and cache.stores < big.stores
    if budget == 0:
        assert cache.stores == cache.resumes == cache.skipped == 0
    else:  # one activation of a batch fits: some entries are kept, not all
        assert cache.stores > 0 and cache.resumes > 0 and big.peak > budget
    assert_same(cached, plain)


def count_calls(monkeypatch: pytest.MonkeyPatch, budget: int | None, where: list[str]
                ) -> tuple[list[int], int]:
    """How often the converted model's modules ``where`` run during a refit (no refine)
    of a ResNet whose stem is a Sequential; and the converted layers after the stem."""
    original, converted, names = build(lambda: ResNet((2, 2), 16, 5))
    counts = dict.fromkeys(where, 0)

    def counted(name: str, plain: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*a: Any) -> Any:
            counts[name] += 1
            return plain(*a)
        return forward

    for name in where:  # not hooks: a Sequential with hooks inside is never resumed
        m = converted.get_submodule(name)
        vars(m)["forward"] = counted(name, m.forward)
    with monkeypatch.context() as mp:
        if budget is None:
            mp.setattr(resume, "sequential_cache", no_cache)
        refit(original, converted, names, data(), 8, resume_budget=budget)
    return [counts[n] for n in where], len([n for n in names if not n.startswith("stem")])


def test_the_cache_skips_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    where = ["stem.1", "stages.0.0.bn3", "stages.0.1.bn3"]  # the stem, then deeper
    batches = 3
    off, layers = count_calls(monkeypatch, None, where)
    on, _ = count_calls(monkeypatch, BIG, where)
    assert layers == 4  # the 3x3 convs of the four bottlenecks
    # one forward of one input first (the survey); then, without the cache, every pass
    # runs the network up to its layer
    assert off == [1 + layers * batches, 1 + (layers - 1) * batches,
                   1 + (layers - 2) * batches]
    # with it, each module runs in the first pass that gets past it, never again
    assert on == [1 + batches] * 3
    none, _ = count_calls(monkeypatch, 0, where)
    assert none == off  # budget 0: the plain passes


def test_everything_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    class Own(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    model = nn.Sequential(conv3(3, 16), nn.Sequential(nn.ReLU(), Own(nn.Identity())))
    with resume.sequential_cache(model, BIG) as cache:
        patched = [m for m in model.modules() if "forward" in vars(m)]
        assert patched == [model, model[1]]  # not a Sequential with a forward of its own
        with cache.batch(0):
            y = model(torch.randn(2, 3, 8, 8))
        assert cache.stores == 4 and y.shape == (2, 16, 8, 8)
    assert not any("forward" in vars(m) for m in model.modules())
    with pytest.raises(RuntimeError, match="mid-way"), resume.sequential_cache(model, BIG):
        assert "forward" in vars(model)
        raise RuntimeError("mid-way")
    assert not any("forward" in vars(m) for m in model.modules())


class Split(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x * 2


class Join(nn.Module):
    def forward(self, xs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return xs[0] - xs[1].sin()


def test_what_is_not_a_plain_tensor_runs_plainly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(conv3(3, 8), nn.ReLU(), Split(), Join(), nn.ReLU(inplace=True))
    tail = nn.Sequential(Join(), nn.ReLU())
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        want = model(x), tail((x, x))
    with resume.sequential_cache(model, BIG) as cache, torch.inference_mode():
        got = []
        for _ in range(3):
            with cache.batch(0):
                got.append(model(x))
        assert cache.stores == 2 and cache.resumes == 2  # up to the tuple, never after
        assert cache.skipped == 4
        with cache.batch(0):
            assert torch.equal(tail((x, x)), want[1])  # a tuple input: plain
        assert cache.stores == 2 and cache.resumes == 2
        model(x)  # outside a batch: plain
        assert cache.stores == 2 and cache.resumes == 2
    assert all(torch.equal(y, want[0]) for y in got)
    with resume.sequential_cache(tail, BIG) as cache:  # the tail itself, patched
        with cache.batch(0):
            assert torch.equal(tail((x, x)), want[1]) and cache.stores == 0


class Fails(nn.Module):
    """Passes its input on, until its ``after``-th call: then raises ``error``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.after = 0, 1 << 30
        self.error: BaseException = ValueError("broken")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.after:
            raise self.error
        return x


class Failing(InPlace):
    """InPlace with a module called in every pass, before the Sequentials."""

    def __init__(self) -> None:
        super().__init__()
        self.fails = Fails()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.fails(self.stem(x))).mean((2, 3)))


@pytest.mark.parametrize("error", [ValueError("broken"), KeyboardInterrupt()])
def test_a_failing_forward_gives_everything_back(error: BaseException) -> None:
    original, converted, names = build(Failing)
    fails = converted.fails
    assert isinstance(fails, Fails)
    # the survey's forward, two layers' passes on two batches; then the third layer's
    fails.calls, fails.after, fails.error = 0, 6, error
    seen: list[bool] = []

    def watch(name: str) -> None:  # the refit's progress: the cache is in place
        seen.append(any("forward" in vars(m) for m in converted.modules()))

    with pytest.raises(Exception if isinstance(error, Exception) else KeyboardInterrupt):
        refit(original, converted, names, data(16), 8, watch, resume_budget=BIG)
    assert fails.calls == 6 and seen == [True, True]
    assert not any("forward" in vars(m) for m in converted.modules())


def test_the_budget() -> None:
    cpu = torch.device("cpu")
    assert resume.budget(None, 10, cpu) == resume.UNKNOWN
    assert resume.budget(100, 200, cpu) == 0  # nothing left over: no cache
    assert resume.budget(1000, 200, cpu) == int(800 * resume.SHARE)
    assert resume.budget(1 << 50, 0, cpu) == resume.CAP
    assert resume.budget(1 << 40, 0, torch.device("meta")) == 0
