"""Spec E metrics: known answers for the population MIA and hand-computed values for the rest."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from conftest import train_tiny
from deepunlearn import metrics
from deepunlearn.errors import UserError
from deepunlearn.training import accuracy


def test_mia_separable_losses_are_found():
    rng = np.random.default_rng(0)
    assert metrics.mia(rng.uniform(0.0, 0.1, 200), rng.uniform(2.0, 3.0, 200)) >= 0.95


def test_mia_identical_distributions_is_chance():
    rng = np.random.default_rng(1)
    assert abs(metrics.mia(rng.gamma(1.0, 1.0, 3000), rng.gamma(1.0, 1.0, 3000)) - 0.5) <= 0.05


def test_mia_two_gaussians_reaches_bayes_accuracy():
    # N(0, 1) vs N(1.5, 1), equal priors: the Bayes rule thresholds at 0.75, accuracy Φ(0.75)
    rng = np.random.default_rng(2)
    d = 1.5
    got = metrics.mia(rng.normal(0, 1, 5000), rng.normal(d, 1, 5000))
    assert abs(got - norm.cdf(d / 2)) <= 0.02


def test_mia_balances_by_truncation_and_is_seeded():
    rng = np.random.default_rng(3)
    members, others = rng.normal(0, 1, 100), rng.normal(0, 1, 20000)
    # 100 members vs 20,000 non-members of the same law: still chance, because both sides are cut to 100
    assert abs(metrics.mia(members, others) - 0.5) <= 0.1
    assert metrics.mia(members, others) == metrics.mia(torch.tensor(members), torch.tensor(others))
    assert metrics.mia(members, others, seed=5) != metrics.mia(members, others, seed=6)


def test_mia_rejects_too_few_samples_and_nan():
    with pytest.raises(UserError):
        metrics.mia(np.ones(3), np.zeros(50))
    with pytest.raises(FloatingPointError):
        metrics.mia(np.array([np.nan] * 20), np.zeros(50))


@pytest.mark.parametrize("m, expected", [(0.5, 1.0), (0.75, 0.5), (0.25, 0.5), (1.0, 0.0), (0.0, 0.0),
                                         (0.6, 0.8)])
def test_indiscernibility(m, expected):
    assert metrics.indiscernibility(m) == pytest.approx(expected)


def test_rte_retention_retdev_sape_by_hand():
    assert metrics.rte(100.0, 20.0) == 5.0
    assert metrics.rte(10.0, 0.0) == math.inf
    assert metrics.retention(0.45, 0.9) == 0.5
    # |0.90/0.95 − 1| + |0.80/0.85 − 1| + |0.85/0.85 − 1| = 1/19 + 1/17
    assert metrics.retdev(0.90, 0.80, 0.85, 0.95, 0.85, 0.85) == pytest.approx(1 / 19 + 1 / 17)
    assert metrics.retdev(0.9, 0.8, 0.7, 0.9, 0.8, 0.7) == 0.0
    # 100·|0.9 − 0.8| / (0.8 + 0.9)
    assert metrics.sape(0.8, 0.9) == pytest.approx(100 * 0.1 / 1.7)
    assert metrics.sape(0.9, 0.8) == metrics.sape(0.8, 0.9)
    assert metrics.sape(0.0, 0.0) == 0.0
    assert metrics.sape(0.0, 0.5) == 100.0


def _linear(w: list[float], b: float) -> nn.Linear:
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([w]))
        m.bias.fill_(b)
    return m


def test_model_distances_by_hand():
    a, b = _linear([3.0, 4.0], 0.0), _linear([0.0, 4.0], 0.0)  # ‖θ_a‖ = 5, ‖θ_b‖ = 4, ‖θ_a − θ_b‖ = 3
    d = metrics.model_distances(a, b)
    assert d["dist_l2"] == pytest.approx(3.0)
    assert d["dist_norm"] == pytest.approx(3.0 / 5.0)
    # (3, 4, 0)/5 − (0, 4, 0)/4 = (0.6, −0.2, 0)
    assert d["dist_scaled"] == pytest.approx(math.sqrt(0.6 ** 2 + 0.2 ** 2))
    assert metrics.model_distances(a, a) == {"dist_norm": 0.0, "dist_l2": 0.0, "dist_scaled": 0.0}


def test_evaluate_one_pass_per_split_and_matches_accuracy(tiny_data, monkeypatch):
    model = train_tiny("tinycnn", tiny_data, epochs=1)
    calls = []
    real = metrics.predict
    monkeypatch.setattr(metrics, "predict", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    row, losses = metrics.evaluate(model, tiny_data, return_losses=True)
    assert calls == ["retain", "forget", "val", "test"]  # one batched pass per split
    for split, key in metrics.ACCURACY_KEYS.items():
        assert row[key] == pytest.approx(accuracy(model, tiny_data, split))
        assert losses[split].shape == (tiny_data.size(split),)
    assert row["val_mia"] == metrics.mia(losses["forget"], losses["val"])
    assert row["test_mia"] == metrics.mia(losses["forget"], losses["test"])
    assert metrics.accuracies(model, tiny_data) == {k: row[k] for k in ("ra", "fa", "va", "ta")}


def test_evaluate_marks_a_diverged_model_with_nan_mia(tiny_data):
    model = train_tiny("tinycnn", tiny_data, epochs=1)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    row = metrics.evaluate(model, tiny_data)
    assert math.isnan(row["val_mia"]) and math.isnan(row["test_mia"]) and 0 <= row["ra"] <= 1


def test_versus_retrain_is_neutral_on_the_retrained_model():
    r = {"ra": 0.9, "fa": 0.8, "va": 0.8, "ta": 0.8, "val_mia": 0.55, "test_mia": 0.5}
    u = {**r, "ra": 0.45, "test_mia": 0.75}
    same = metrics.versus_retrain(r, r, 30.0, 30.0)
    assert same["retdev"] == 0.0 and same["rte"] == 1.0 and same["sape_ra"] == 0.0
    assert same["indisc"] == 1.0 and same["val_indisc"] == pytest.approx(0.9)
    other = metrics.versus_retrain(u, r, 3.0, 30.0)
    assert other["rr"] == 0.5 and other["retdev"] == pytest.approx(0.5)
    assert other["rte"] == 10.0 and other["indisc"] == pytest.approx(0.5)
    assert math.isnan(metrics.versus_retrain(u, r, math.nan, 30.0)["rte"])


def test_rte_normalised_by_the_measured_speed():
    # U ran at half speed (a competing process) and took twice as long: the same work, the same RTE
    assert metrics.rte_at_speed(100.0, 40.0, 20.0, 20.0) == 10.0
    assert metrics.rte(100.0, 20.0) == 5.0  # the raw ratio would have halved
    assert metrics.rte_at_speed(100.0, math.nan, 20.0, 20.0) == 5.0  # no speed stored: the raw ratio
    assert metrics.run_speed({"before": 30.0, "after": 50.0}) == 40.0
    assert math.isnan(metrics.run_speed(None)) and math.isnan(metrics.run_speed({"before": 3.0}))
    assert metrics.speed_gap(40.0, 50.0) == pytest.approx(0.25) and metrics.speed_gap(50.0, 40.0) == pytest.approx(0.25)
    assert math.isnan(metrics.speed_gap(math.nan, 1.0))
    u = {"ra": 0.9, "fa": 0.8, "ta": 0.85}
    out = metrics.versus_retrain(u, u, 20.0, 100.0, g_unlearn=20.0, g_retrain=40.0)
    assert (out["rte"], out["rte_wall"], out["speed_gap"]) == (5.0, 5.0, 1.0)


def test_rte_rests_on_the_fastest_attempt_and_keeps_the_wall_ratio():
    loaded = {"time": 40.0, "gflops": {"before": 50.0, "after": 70.0}, "attempts": [
        {"seconds": 40.0, "gflops": {"before": 50.0, "after": 70.0}},
        {"seconds": 25.0, "gflops": {"before": 90.0, "after": 100.0}},
        {"seconds": 30.0, "gflops": {"before": 95.0, "after": 95.0}}]}
    t = metrics.run_timing(loaded)
    assert t == {"seconds": 25.0, "gflops": 95.0, "wall_s": 40.0, "wall_gflops": 60.0, "tries": 3}
    # a meta stored before re-timing: its one wall time is all there is
    old = metrics.run_timing({"time": 40.0, "gflops": {"before": 50.0, "after": 70.0}})
    assert old == {"seconds": 40.0, "gflops": 60.0, "wall_s": 40.0, "wall_gflops": 60.0, "tries": 1}
    assert math.isnan(metrics.run_timing({"time": 40.0})["gflops"])
    u = {"ra": 0.9, "fa": 0.8, "ta": 0.85}
    out = metrics.versus_retrain(u, u, t["seconds"], 100.0, t["gflops"], 100.0, t["wall_s"], 100.0)
    assert (out["rte"], out["rte_wall"]) == (4.0, 2.5)
    assert out["speed_gap"] == pytest.approx(100 / 95 - 1)


def test_speed_probe_is_short_and_positive():
    from deepunlearn.training import matmul_gflops

    assert matmul_gflops("cpu", seconds=0.01) > 0
