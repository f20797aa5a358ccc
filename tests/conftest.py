"""Shared fixtures: real offline data (scikit-learn digits) and tiny trained Original models."""

from __future__ import annotations

import json
import os

import pytest
import torch

from deepunlearn.data import DeviceData, load_device_data
from deepunlearn.models import create_model
from deepunlearn.store import Store
from deepunlearn.training import Recipe, fit, to_device

ARCHS = ("resnet18", "tinyvit")  # the paper's two architectures, at tiny data size

# Under pytest-xdist (make test: one worker per core) each worker and every process it starts gets one
# thread, so workers do not oversubscribe the cores (torch's spinning pools slow down 5x or more then).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # for the processes tests start

# Shifts the seeds of every trained fixture (inits and data order). Tests about learned behaviour must
# hold for any value: `make test-margins` runs them over several, and under another float path.

FIXTURE_SEED = int(os.environ.get("DEEPUNLEARN_TEST_SEED", "0"))
LEARNED_FIXTURES = {"fitted_tinycnn", "originals", "original"}  # trained models: see `learned` below


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "learned: asserts on a trained model's behaviour (make test-margins)")
    config.addinivalue_line("markers", "slow: many seconds on its own (make test runs it; make test-fast does not)")


def pytest_collection_modifyitems(items) -> None:
    """Tests that use a trained fixture are `learned` without saying so."""
    for item in items:
        if LEARNED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.learned)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory) -> Store:
    """One store for the whole test session (prepared digits are reused)."""
    return Store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def digits(session_store) -> DeviceData:
    """scikit-learn's digits (1,797 real images) with spec A.3 splits, on the CPU."""
    return load_device_data("digits", "cpu", store=session_store)


@pytest.fixture(scope="session")
def tiny_data(digits) -> DeviceData:
    """A few dozen samples per split: enough for every method to run in about a second.

    TinyViT-11M pads its attention windows (7, 7, 14, 7) far beyond the 32-px token grids, so one
    batch costs about a second on this CPU: the tiny splits keep each method to a batch or three.
    """
    return digits.with_splits(retain=digits.splits["retain"][:48], forget=digits.splits["forget"][:16],
                              val=digits.splits["val"][:16], test=digits.splits["test"][:16])


def train_tiny(arch: str, data: DeviceData, epochs: int = 2, seed: int = 0) -> torch.nn.Module:
    """An Original model of `arch` briefly trained on retain ∪ forget of `data`."""
    model = to_device(create_model(arch, data.num_classes, data.info.img_size, seed=seed + FIXTURE_SEED), data.device)
    fit(model, data, ["retain", "forget"], Recipe(epochs=epochs, batch_size=16, lr=0.05), seed=123 + FIXTURE_SEED,
        progress=False)
    # Two epochs leave BatchNorm's running statistics far from the data (eval-mode ResNet-18 logits
    # in the thousands), which breaks eval-mode methods (NG+, CF-k, EU-k): re-estimate them exactly.
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    with torch.no_grad():
        for x, _ in data.batches(["retain", "forget"], 16):
            model(x)
    for m in bns:
        m.momentum = 0.1
    return model


@pytest.fixture(scope="session")
def originals(tiny_data) -> dict[str, torch.nn.Module]:
    """Tiny Original models of both paper architectures and the small test CNN."""
    return {arch: train_tiny(arch, tiny_data) for arch in ARCHS + ("tinycnn",)}


@pytest.fixture(scope="module")
def fitted_tinycnn(tiny_data) -> torch.nn.Module:
    """A tinycnn that fits the tiny splits (the 2-epoch `originals` are still near uniform); one per module."""
    model = create_model("tinycnn", tiny_data.num_classes, tiny_data.info.img_size, seed=FIXTURE_SEED)
    fit(model, tiny_data, ["retain", "forget"], Recipe(epochs=20, batch_size=16, lr=0.2, augment=False),
        seed=123 + FIXTURE_SEED, progress=False)
    return model


def below(lhs: float, rhs: float, what: str) -> None:
    """Assert lhs < rhs for a learned property; log the margin rhs/lhs for `make test-margins`."""
    lhs, rhs = float(lhs), float(rhs)
    log = os.environ.get("DEEPUNLEARN_MARGIN_LOG")
    if log:  # one JSON line per check, appended (atomic for short lines, so xdist workers can share it)
        line = json.dumps({"what": what, "lhs": lhs, "rhs": rhs, "seed": FIXTURE_SEED,
                           "cpu": os.environ.get("ATEN_CPU_CAPABILITY", "native")})
        with open(log, "a") as f:
            f.write(line + "\n")
    assert lhs < rhs, f"{what}: {lhs:.6g} is not below {rhs:.6g}"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True if every tensor of the two state dicts is bit-identical."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a model's state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
