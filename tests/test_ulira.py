"""U-LiRA (spec G, DESIGN §8): splits, statistic, known answers on synthetic statistics, stored shadows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from conftest import FIXTURE_SEED, below, train_tiny
from deepunlearn import trained
from deepunlearn.attacks import ulira as ul
from deepunlearn.methods import base
from deepunlearn.store import Store
from deepunlearn.training import Recipe, sgd, train_epoch

# --- splits and statistic -----------------------------------------------------------------------------

def test_splits_follow_spec_g1_sizes_and_rules():
    sp = ul.make_lira_splits(np.arange(50000)[::-1], n_splits=2, n_forget=2)  # the input order is irrelevant
    assert (len(sp.val), len(sp.pool), len(sp.train[0]), len(sp.held[0])) == (2500, 47500, 23750, 23750)
    assert (len(sp.forget[1][1]), len(sp.retain[1][1])) == (2375, 21375)
    perm = np.random.default_rng(123).permutation(np.arange(50000))
    assert np.array_equal(sp.val, perm[-2500:])
    assert np.array_equal(sp.train[1], np.random.default_rng(1).permutation(perm[:-2500])[:23750])
    assert np.array_equal(sp.forget[1][1], np.random.default_rng(1).permutation(sp.train[1])[-2375:])
    for s in range(2):
        assert np.array_equal(np.sort(np.concatenate([sp.train[s], sp.held[s]])), sp.pool)
        for f in range(2):
            both = np.concatenate([sp.retain[s][f], sp.forget[s][f]])
            assert np.array_equal(np.sort(both), np.sort(sp.train[s]))
    assert not np.array_equal(sp.forget[0][0], sp.forget[0][1])
    assert sp.checksum() == ul.make_lira_splits(np.arange(50000), 2, 2).checksum()


def test_logit_confidence_is_stable_log_odds():
    logits = torch.tensor([[2.0, 0.5, -1.0], [1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    got = ul.logit_confidence(logits, y)
    p = torch.softmax(logits[0], 0)[0]
    assert got[0].item() == pytest.approx(math.log(p / (1 - p)), rel=1e-5)
    assert got[1].item() == pytest.approx(1000.0) and got[2].item() == pytest.approx(-2000.0)


def test_model_statistics_of_a_diverged_model_are_finite(tiny_data):
    model = train_tiny("tinycnn", tiny_data, epochs=1)
    idx = tiny_data.indices("retain").numpy()
    good = ul.model_statistics(model, tiny_data, idx)
    assert np.isfinite(good["logit"]).all() and set(np.unique(good["correct"])) <= {0.0, 1.0}
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    assert (ul.model_statistics(model, tiny_data, idx)["logit"] == -ul.STAT_CLIP).all()


# --- known answers on synthetic statistics ----------------------------------------------------------------

class SyntheticShadows(ul.Shadows):
    """Per-model statistics a_x + noise (retrained) and a_x + d + noise (unlearned): membership effect d."""

    def __init__(self, splits: ul.LiraSplits, d: float, seed: int = 0, correct: bool = False):
        self.splits, self.share_original = splits, False
        rng = np.random.default_rng(seed)
        n, pairs = len(splits.pool), splits.pairs()
        a = rng.normal(0.0, 2.0, n)  # per-sample difficulty, which per-sample Gaussians must absorb
        self.index = {p: k for k, p in enumerate(pairs)}
        self.r = a + rng.normal(0.0, 1.0, (len(pairs), n))
        self.u = a + d + rng.normal(0.0, 1.0, (len(pairs), n))
        if correct:
            self.r, self.u = (self.r > 0).astype(float), (self.u > 0).astype(float)

    def reference_stats(self, role, s, f):
        return {"logit": self.r[self.index[(s, f)]], "correct": self.r[self.index[(s, f)]]}

    def target_stats(self, target, hp, s, f):
        return {"logit": self.u[self.index[(s, f)]], "correct": self.u[self.index[(s, f)]]}


def _attack_synthetic(n_splits: int, n_forget: int, n: int, d: float, statistic: str = "logit") -> dict:
    sp = ul.make_lira_splits(np.arange(n), n_splits, n_forget)
    obs = ul.collect(SyntheticShadows(sp, d, correct=statistic == "correct"), "synthetic", None, statistic)
    lp, ln = ul.fit_and_score(obs.in_x, obs.in_v, obs.in_split, obs.out_x, obs.out_v, obs.out_split,
                              len(sp.pool))
    assert np.isfinite(lp).all() and np.isfinite(ln).all()
    return ul.summarize(lp, ln)[0]


def test_planted_effect_gives_the_analytic_auc():
    # the paper's 64 x 10 geometry: ~32 in- and ~320 out-observations per sample; equal unit variances,
    # so the optimal per-sample test has AUC Φ(d / √2)
    d = 1.0
    s = _attack_synthetic(64, 10, 420, d)
    assert abs(s["auc"] - norm.cdf(d / math.sqrt(2))) <= 0.03
    assert s["mean_score"] > 0.55 and s["tpr_at_1pct_fpr"] > 0.03


@pytest.mark.parametrize("n_splits, n_forget, n", [(64, 10, 420), (8, 2, 2000)])
def test_no_effect_is_chance(n_splits, n_forget, n):
    # 8 x 2 leaves under one in-observation per sample: the split-level holdout keeps positives and
    # negatives exchangeable (fitting a target on itself, as the reference does, would inflate the AUC)
    s = _attack_synthetic(n_splits, n_forget, n, 0.0)
    assert abs(s["auc"] - 0.5) <= 0.03
    assert s["tpr_at_1pct_fpr"] <= 0.03


def test_correctness_statistic_survives_zero_variance():
    s = _attack_synthetic(16, 4, 600, 1.0, statistic="correct")
    assert 0.5 < s["auc"] <= 1.0


def test_summary_of_separated_scores():
    s, fpr, tpr = ul.summarize(np.array([3.0, 4.0, 5.0]), np.array([-1.0, -2.0, 0.5]))
    assert s["auc"] == 1.0 and s["tpr_at_01pct_fpr"] == 1.0 and s["balanced_acc"] == pytest.approx(5 / 6)
    assert s["mean_score"] == pytest.approx(np.mean(1 / (1 + np.exp(-np.array([3.0, 4.0, 5.0])))))
    assert fpr[0] == 0.0 and tpr[-1] == 1.0


# --- real shadow models in the store ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def relearn():
    """A test "method" that trains on the forget set: it leaks membership by construction."""
    from dataclasses import dataclass

    @dataclass
    class NoHP:
        pass

    def fn(model, data, hp):
        opt = sgd(model, lr=0.05)
        for _ in range(10):
            train_epoch(model, opt, data.batches("forget", 16, shuffle=True, generator=base.rng(data)))
        return model

    base.register_method("relearn_test", display="Relearn", hparams=NoHP)(fn)
    yield "relearn_test"
    del base._METHODS["relearn_test"]


@pytest.fixture(scope="module")
def shadows(digits, tmp_path_factory):
    sp = ul.make_lira_splits(ul.official_train(digits), n_splits=3, n_forget=2)
    return ul.Shadows(Store(tmp_path_factory.mktemp("lira")), digits, sp, "tinycnn", FIXTURE_SEED,
                      Recipe(epochs=2, batch_size=64, lr=0.05))


@pytest.mark.learned
def test_attack_on_real_shadows_and_store_is_shared(shadows, relearn, monkeypatch):
    res_r = ul.attack(shadows, "retrain")
    res_o = ul.attack(shadows, "original")
    res_ft = ul.attack(shadows, "ft", {"epochs": 1, "batch_size": 64})
    # shared Originals: one per split (3), Retrained: one per (split, forget set) (6)
    stats = [b for b in shadows.built if "-original-" in b or "-retrain-" in b]
    assert sum("-original-" in b for b in stats) == 3 and sum("-retrain-" in b for b in stats) == 6
    sp = shadows.splits
    n_forget = len(sp.forget[0][0])
    assert res_r.summary["n_pos"] == 6 * n_forget and res_r.summary["n_neg"] == 6 * len(sp.held[0])
    assert res_ft.summary["n_pos"] == 6 * n_forget
    assert res_o.summary["n_pos"] <= 6 * n_forget  # a sample forgotten twice by one Original counts once
    below(abs(res_r.summary["auc"] - 0.5), 0.1, "ulira: |AUC - 0.5| of Retrained vs Retrained < 0.1")
    assert res_o.per_sample["index"].shape == sp.pool.shape
    forgotten = np.load(res_ft.path / "forgotten.npz")
    assert len(forgotten["score"]) == res_ft.summary["n_pos"] and np.isin(forgotten["index"], sp.pool).all()
    assert forgotten["score"].mean() == pytest.approx(res_ft.summary["mean_score"], abs=1e-6)

    # a second method (a fresh object, as another process would be) trains no shadow and rebuilds no statistic
    calls = []
    monkeypatch.setattr(trained, "fit", lambda *a, **k: calls.append(1) or pytest.fail("shadow retrained"))
    again = ul.Shadows(shadows.store, shadows.data, shadows.splits, shadows.arch, shadows.seed,
                       shadows.recipe)
    res_s = ul.attack(again, relearn)
    assert calls == [] and len(again.built) == 6 and all(relearn in b for b in again.built)
    below(0.8, res_s.summary["auc"], "ulira: planted leak found, AUC > 0.8")
    # rerunning an attack or switching the statistic reads everything from the store
    again.built.clear()
    assert ul.attack(again, "ft", {"epochs": 1, "batch_size": 64}).summary == res_ft.summary
    assert 0.0 <= ul.attack(again, "original", statistic="correct").summary["auc"] <= 1.0
    assert again.built == []
