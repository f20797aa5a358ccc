"""Ranking stability with known answers: Kendall's τ, top-k overlap, the budget-k truncation, τ curves, agreement."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats
from test_ranking import make_table

from deepunlearn import ranking, search, stability
from deepunlearn.config import make_config
from deepunlearn.stages import analyze

FT_DISTRIBUTIONS = {"lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
                    "weight_decay": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
                    "batch_size": optuna.distributions.CategoricalDistribution([64, 128, 256]),
                    "epochs": optuna.distributions.IntDistribution(1, 10)}


def add_trials(study: optuna.Study, scores: list[float]) -> optuna.Study:
    """FT trials whose spec F score is exactly each given value (all of it on the first objective)."""
    for i, s in enumerate(scores):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.001 * (i + 1), "weight_decay": 1e-4, "batch_size": 128, "epochs": 1 + i % 10},
            distributions=FT_DISTRIBUTIONS, values=[s, 0.0, 0.0, 0.0]))
    return study


def memory_study(scores: list[float]) -> optuna.Study:
    return add_trials(optuna.create_study(directions=["minimize"] * 4), scores)


# ---------------------------------------------------------------- τ and top-k

def test_tau_is_one_for_identical_and_minus_one_for_reversed_orders():
    order = ["a", "b", "c", "d", "e"]
    assert stability.kendall_tau(stability.order_ranks(order), stability.order_ranks(order)) == 1.0
    assert stability.kendall_tau(stability.order_ranks(order), stability.order_ranks(order[::-1])) == -1.0
    # scores or ranks: only the order counts
    assert stability.kendall_tau({"a": 0.1, "b": 0.5, "c": 9.0}, {"a": 1, "b": 2, "c": 3}) == 1.0


def test_tau_of_one_swap_among_four_is_two_thirds():
    # 6 pairs, only (c, d) discordant: (5 − 1) / 6
    a, b = stability.order_ranks(["a", "b", "c", "d"]), stability.order_ranks(["a", "b", "d", "c"])
    assert stability.kendall_tau(a, b) == pytest.approx(2 / 3)


def test_tau_b_with_ties_agrees_with_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=9).astype(float), rng.integers(0, 4, size=9).astype(float)  # many ties
        names = [f"m{i}" for i in range(9)]
        ours = stability.kendall_tau(dict(zip(names, x)), dict(zip(names, y)))
        ref = stats.kendalltau(x, y, variant="b").statistic
        assert ours == pytest.approx(ref) or (math.isnan(ours) and math.isnan(ref))


def test_tau_uses_the_items_both_order_and_puts_inf_last():
    a = {"a": 1.0, "b": 2.0, "c": math.inf, "x": 0.0}
    b = {"a": 1.0, "b": 2.0, "c": 3.0, "y": 0.0, "n": math.nan}
    assert stability.kendall_tau(a, b) == 1.0  # a failed search (+inf) is the worst, not an error
    assert math.isnan(stability.kendall_tau({"a": 1.0}, {"a": 2.0}))


def test_top3_overlap_on_a_hand_case():
    a = stability.order_ranks(["a", "b", "c", "d", "e"])
    b = stability.order_ranks(["a", "c", "e", "b", "d"])
    assert stability.top_overlap(a, b, 3) == pytest.approx(2 / 3)  # {a, b, c} ∩ {a, c, e}
    assert stability.top_overlap(a, a, 3) == 1.0 and stability.top_overlap(a, b, 1) == 1.0
    assert stability.top_k({"z": 1.0, "y": 1.0, "x": 2.0}, 1) == ["y"]  # a tie at the boundary: by name


# ---------------------------------------------------------------- the budget-k truncation

def test_budget_k_best_is_what_best_params_picks_with_k_trials(tmp_path):
    # two seeds' studies of one method in SQLite, as the sweep stores them; trial scores by hand:
    #   seed 0: 0.50, 0.30, 0.40, 0.10      seed 1: 0.45, 0.35, inf (a failed trial), 0.20, 0.05
    url = "sqlite:///" + str(tmp_path / "s.db")
    s0 = add_trials(search.open_study(url, search.study_name("ds", "net", "ft", 0, 1), 0, 60), [0.5, 0.3, 0.4, 0.1])
    s1 = add_trials(search.open_study(url, search.study_name("ds", "net", "ft", 1, 1), 1, 60),
                    [0.45, 0.35, math.inf, 0.2, 0.05])
    hand = {1: 0.45, 2: 0.30, 3: 0.30, 4: 0.10, 5: 0.05}  # min over both studies' first k trials
    for k, best in hand.items():
        assert stability.best_at_budget([s0, s1], k) == pytest.approx(best)
        assert search.best_params([s0, s1], "ft", n_trials=k)["score"] == pytest.approx(best)
    assert stability.running_best([s0, s1], 5) == pytest.approx(list(hand.values()))
    assert stability.max_budget({"ft": [s0, s1]}) == 4  # seed 0 has 4 complete trials
    assert stability.budget_bests({"ft": [s0, s1]}, 2) == {"ft": pytest.approx(0.30)}
    assert math.isnan(stability.best_at_budget([memory_study([])], 3))


def test_tau_curve_of_two_replicates_by_hand():
    # replicate A: x is best from budget 1 on; replicate B finds x's good trial only at budget 3
    a = {"x": [memory_study([0.1, 0.1, 0.1])], "y": [memory_study([0.2, 0.2, 0.2])],
         "z": [memory_study([0.3, 0.3, 0.3])]}
    b = {"x": [memory_study([0.9, 0.9, 0.05])], "y": [memory_study([0.2, 0.2, 0.2])],
         "z": [memory_study([0.3, 0.25, 0.25])]}
    curve = stability.tau_curve(a, b)
    # budget 1: B orders y, z, x: pairs (x,y) and (x,z) discordant, (y,z) concordant: τ = −1/3
    # budget 2: the same order (z improves to 0.25, still behind y): −1/3;  budget 3: x first again: τ = 1
    assert curve["budget"].tolist() == [1, 2, 3]
    assert curve["tau"].tolist() == pytest.approx([-1 / 3, -1 / 3, 1.0])
    assert curve["top3"].tolist() == [1.0, 1.0, 1.0]  # three methods: top-3 is everyone
    assert stability.budget_needed(curve) == 3


def test_budget_needed_holds_from_then_on():
    curve = pd.DataFrame({"budget": [1, 2, 3, 4, 5], "tau": [0.2, 0.8, 0.6, 0.75, 0.9], "top3": 1.0})
    assert stability.budget_needed(curve, 0.7) == 4  # 0.8 at budget 2 does not last
    assert stability.budget_needed(curve.assign(tau=[0.8, 0.9, 0.7, 0.75, 0.6]), 0.7) is None
    assert stability.budget_needed(curve.assign(tau=0.9), 0.7) == 1
    assert "from 4 trials per study on" in stability.budget_sentence(curve, 0.7)


def test_extrapolation_follows_a_log_trend_and_declines_when_flat():
    k = np.arange(1, 9)
    curve = pd.DataFrame({"budget": k, "tau": 0.3 + 0.1 * np.log(k), "top3": 1.0})
    # τ = 0.3 + 0.1 ln k reaches 0.7 at k = e^4 ≈ 54.6, within 10× the 8 measured budgets
    assert stability.extrapolate_budget(curve, 0.7) == pytest.approx(math.exp(4))
    assert "reaches it at about 55" in stability.budget_sentence(curve, 0.7)
    assert stability.extrapolate_budget(curve.assign(tau=0.5), 0.7) is None  # flat
    assert stability.extrapolate_budget(curve.assign(tau=0.6 - 0.1 * np.log(k)), 0.7) is None  # falling
    assert stability.extrapolate_budget(curve, 0.95) is None  # e^6.5 ≈ 665 > 80: too far out
    assert "no extrapolation" in stability.budget_sentence(curve, 0.95)


# ---------------------------------------------------------------- final rankings of two replicates

FOUR = {"original": (2.0, 0.5, math.nan), "retrain": (0.0, 0.95, 1.0),
        "m1": (0.1, 0.9, 5.0), "m2": (0.2, 0.9, 5.0), "m3": (0.3, 0.9, 5.0), "m4": (0.4, 0.9, 5.0)}


def test_final_stability_of_two_results_tables():
    one = make_table({("ds", "net"): FOUR})
    swapped = dict(FOUR, m3=(0.4, 0.9, 5.0), m4=(0.3, 0.9, 5.0))
    s = stability.final_stability(one, make_table({("ds", "net"): swapped}))
    assert s["tau"] == pytest.approx(2 / 3) and s["top3"] == pytest.approx(2 / 3)  # {m1,m2,m3} vs {m1,m2,m4}
    assert (s["methods"], s["pairs"]) == (4, 1)
    assert stability.final_stability(one, one)["tau"] == 1.0
    # a pair only the replicate has is left out, so both rankings rank the same pairs
    wider = make_table({("ds", "net"): swapped, ("ds2", "net"): FOUR})
    assert stability.final_stability(one, wider)["pairs"] == 1
    ranks = stability.final_ranks(wider)
    assert ranks.to_dict() == {"m1": 1.0, "m2": 2.0, "m3": 3.5, "m4": 3.5}  # mean of ranks 4, 3 and 3, 4


def seed_rows(retdevs: dict[str, list[float]], seeds=None) -> pd.DataFrame:
    """A one-pair results table with the given RetDev per method and seed (Indisc and RTE equal for all)."""
    return pd.DataFrame([{"dataset": "ds", "arch": "net", "method": m, "seed": (seeds or range(len(v)))[i],
                          "retdev": x, "indisc": 0.9, "rte": 5.0}
                         for m, v in retdevs.items() for i, x in enumerate(v)])


# seed 0 orders m1 < m2 < m3 in both; seed 1 swaps m1 and m2 in A only
NOISY = seed_rows({"m1": [0.1, 0.2], "m2": [0.2, 0.1], "m3": [0.3, 0.3]})
CLEAN = seed_rows({"m1": [0.1, 0.1], "m2": [0.2, 0.2], "m3": [0.3, 0.3]})


def test_seed_halves_by_hand():
    # splits ({0}, {1}) and ({1}, {0}); τ(A0, A1) = 1/3 (one of three pairs swapped), τ(B0, B1) = 1,
    # τ(A0, B1) = 1, τ(A1, B0) = 1/3: same = cross = mean(1/3, 1, 1/3, 1) = 2/3
    h = stability.seed_halves(NOISY, CLEAN)
    assert h["same"] == pytest.approx(2 / 3) and h["cross"] == pytest.approx(2 / 3)
    assert (h["splits"], h["halves"], h["seeds"]) == (2, (1, 1), 2)
    text = stability.halves_sentence(h)
    assert text.startswith("split into 1 and 1 of the 2 seeds (all 2 splits), the same replicate orders the "
                           "methods on the two halves with τ = 0.67")
    assert text.endswith("a ranking on this few seeds does not carry over to new seeds, whatever the search budget")


def test_seed_halves_tell_seed_noise_from_the_search():
    order = {f"m{i}": (0.1 * i, 0.9, 5.0) for i in range(1, 6)}
    a = make_table({("ds", "net"): order}, seeds=(0, 1, 2, 3))  # every seed orders m1..m5 alike
    reversed_ = make_table({("ds", "net"): {m: (0.6 - v[0], *v[1:]) for m, v in order.items()}}, seeds=(0, 1, 2, 3))
    h = stability.seed_halves(a, reversed_)
    assert (h["same"], h["cross"], h["splits"], h["halves"]) == (1.0, -1.0, 6, (2, 2))
    assert "does not carry over" not in stability.halves_sentence(h)
    assert stability.seed_interval(a, reversed_, n_boot=50) == (-1.0, -1.0)
    assert stability.seed_interval(a, a, n_boot=50) == (1.0, 1.0)


def test_seed_interval_by_hand():
    # a draw of both seeds once ties m1 and m2 in A (τ-b 2/√6 against B's strict order), seed 0 twice gives
    # τ = 1, seed 1 twice τ = 1/3: the 95% interval runs from 1/3 to 1
    lo, hi = stability.seed_interval(NOISY, CLEAN, n_boot=400)
    assert lo == pytest.approx(1 / 3) and hi == 1.0
    assert stability.seed_interval(NOISY, CLEAN, n_boot=400) == (lo, hi)  # seeded: the same draws every time
    s = stability.final_stability(NOISY, CLEAN, n_boot=400)
    assert s["tau"] == pytest.approx(2 / math.sqrt(6)) and s["ci"] == (lo, hi)
    assert "95% bootstrap interval over the 2 seeds (the same draw in both replicates) 0.33 to 1.00" in (
        stability.final_sentence(s))


def test_seed_curve_by_hand():
    # NOISY against CLEAN: seed 0 alone τ = 1, seed 1 alone 1/3 (mean 2/3); both seeds 2/√6 (see above)
    assert stability.seed_curve(NOISY, CLEAN) == [(1, pytest.approx(2 / 3)), (2, pytest.approx(2 / math.sqrt(6)))]
    # five methods, B in order on both seeds. A's seed 0 orders m2 m3 m1 m5 m4 (3 of the 10 pairs discordant,
    # τ = 0.4), its seed 1 m2 m1 m5 m3 m4 (3, τ = 0.4); its seed means order m2 m1 m3 m5 m4 (2, τ = 0.6)
    b = seed_rows({f"m{i}": [0.1 * i, 0.1 * i] for i in range(1, 6)})
    a = seed_rows({"m1": [0.3, 0.2], "m2": [0.1, 0.1], "m3": [0.2, 0.4], "m4": [0.5, 0.5], "m5": [0.4, 0.3]})
    rising = stability.seed_curve(a, b)
    assert rising == [(1, pytest.approx(0.4)), (2, pytest.approx(0.6))]
    assert stability.seeds_sentence(rising) == (
        "over k of the 2 seeds (mean over k-subsets of them, the same in both replicates) the final τ is 0.40 (1), "
        "0.60 (2) for k = 1..2: still +0.20 from the last seed, so more seeds in the final runs would raise it")
    # the searches disagree on every seed alike: seeds cannot help
    order = {f"m{i}": (0.1 * i, 0.9, 5.0) for i in range(1, 6)}
    same = make_table({("ds", "net"): order}, seeds=(0, 1, 2))
    flipped = make_table({("ds", "net"): {m: (0.6 - v[0], *v[1:]) for m, v in order.items()}}, seeds=(0, 1, 2))
    flat = stability.seed_curve(same, flipped)
    assert flat == [(1, -1.0), (2, -1.0), (3, -1.0)]
    assert stability.seeds_sentence(flat).endswith(
        "the last seed added +0.00, so more seeds in the final runs would raise it little; the two searches' "
        "different choices hold it below 0.7")
    assert stability.seeds_sentence([]).startswith("τ against the seeds not measured")
    assert stability.final_stability(NOISY, CLEAN, n_boot=10)["seeds"] == stability.seed_curve(NOISY, CLEAN)


def test_seed_curve_averages_a_bounded_draw_of_subsets(monkeypatch):
    rng = np.random.default_rng(5)
    a = seed_rows({f"m{i}": rng.random(6).round(3).tolist() for i in range(5)})
    b = seed_rows({f"m{i}": rng.random(6).round(3).tolist() for i in range(5)})
    full = stability.seed_curve(a, b)  # at most C(6, 3) = 20 subsets per k: every one
    monkeypatch.setattr(stability, "SUBSETS", 6)
    drawn = stability.seed_curve(a, b)
    assert [k for k, _ in drawn] == [1, 2, 3, 4, 5, 6]
    assert drawn[0] == full[0] and drawn[-1] == full[-1]  # 6 and 1 subsets: all of them
    assert drawn[2] != full[2]  # k = 3: 6 of the 20 subsets
    assert drawn == stability.seed_curve(a, b)  # the draw is seeded


def test_seed_rows_reweighting_is_final_ranks_on_those_seeds():
    rng = np.random.default_rng(3)
    t = seed_rows({f"m{i}": rng.random(4).round(2).tolist() for i in range(6)})
    t = t.drop(index=t.index[(t["method"] == "m2") & (t["seed"] == 1)])  # a missing run is left out of its mean
    rows = stability.SeedRows(t, [0, 1, 2, 3])
    assert rows.ranks(np.ones(4)) == stability.final_ranks(t).to_dict()
    assert rows.ranks(np.array([2.0, 0, 1, 0])) == stability.final_ranks(
        pd.concat([t[t["seed"] == 0], t[t["seed"] == 0], t[t["seed"] == 2]])).to_dict()


# ---------------------------------------------------------------- search score vs final RetDev

def test_agreement_names_the_methods_whose_order_flips():
    # the example: GA's best trial beats the Original on search score, and loses to it on RetDev
    search_scores = {"original": 0.088, "ga": 0.060, "ft": 0.05, "ngplus": 0.07}
    retdev = {"original": 0.10, "ga": 0.32, "ft": 0.05, "ngplus": 0.08}
    df = stability.agreement(search_scores, retdev).set_index("method")
    assert df["search_rank"].to_dict() == {"ft": 1, "ga": 2, "ngplus": 3, "original": 4}
    assert df["retdev_rank"].to_dict() == {"ft": 1, "ngplus": 2, "original": 3, "ga": 4}
    assert df.index[0] == "ga" and df.loc["ga", "shift"] == 2  # the largest shift comes first
    assert df.loc["ga", "vs_reference"] == "beats original on search, not on RetDev"
    assert df.loc["ngplus", "vs_reference"] == "" and df.loc["original", "vs_reference"] == "reference"
    text = stability.agreement_sentence(df.reset_index(), displays={"ga": "GA"})
    # pairs: ft ahead of all in both (3 concordant); (ga, ngplus) and (ga, original) discordant; (ngplus, original)
    # concordant: (4 − 2) / 6
    assert text.startswith("Kendall's τ = 0.33 between the order by best search score and by final RetDev (4 methods)")
    assert "GA beats original on search, not on RetDev (search 0.060 vs 0.088; RetDev 0.320 vs 0.100)" in text


def test_search_scores_of_the_final_runs_against_the_same_seeds_retrain():
    rows = [{"dataset": "ds", "arch": "net", "method": "retrain", "seed": 0, "ra": 0.9, "fa": 0.8, "va": 0.85,
             "val_mia": 0.5},
            {"dataset": "ds", "arch": "net", "method": "original", "seed": 0, "ra": 0.99, "fa": 0.98, "va": 0.88,
             "val_mia": 0.6},
            {"dataset": "ds", "arch": "net", "method": "original", "seed": 1, "ra": 0.5, "fa": 0.5, "va": 0.5,
             "val_mia": 0.5}]  # seed 1 has no Retrain row: not scored
    got = stability.table_search_scores(pd.DataFrame(rows), "ds", "net")
    # f = (0.09/3, 0.18/3, 0.03/3, 1 − Indisc(0.6) = 0.2)
    assert got["original"] == pytest.approx(math.sqrt(0.03 ** 2 + 0.06 ** 2 + 0.01 ** 2 + 0.2 ** 2))
    assert got["retrain"] == 0.0


# ---------------------------------------------------------------- into the analysis's protocol

def test_protocol_reports_tau_when_the_analysis_has_a_replicate():
    one = make_table({("ds", "net"): FOUR}).assign(trials=8, search_seeds="0")
    rep = make_table({("ds", "net"): dict(FOUR, m3=(0.4, 0.9, 5.0), m4=(0.3, 0.9, 5.0))}).assign(
        trials=8, search_seeds="0")
    r = ranking.rank(one, n_boot=100)
    a = analyze.Analysis(make_config("analyze", replicates=["rep"]), [], one, r, env={}, replicate=rep)
    p = dict(analyze.protocol(a).itertuples(index=False, name=None))
    assert p["ranking stability"] == ("Kendall's τ = 0.67 between the final RetDev rankings of this run and its "
                                      "replicate search (top-3 overlap 0.67; 4 methods, mean rank over 1 "
                                      "(dataset, arch) pair) at 8 trials per study; 95% bootstrap interval over "
                                      "the 2 seeds (the same draw in both replicates) 0.67 to 0.67; split into 1 "
                                      "and 1 of the 2 seeds (all 2 splits), the same replicate orders the methods "
                                      "on the two halves with τ = 1.00 (the final runs' seed noise alone) and the "
                                      "two replicates with τ = 0.67 (seed noise and the two searches' choices); "
                                      "over k of the 2 seeds (mean over k-subsets of them, the same in both replicates) "
                                      "the final τ is 0.67 (1), 0.67 (2) for k = 1..2: the last seed added +0.00, "
                                      "so more seeds in the final runs would raise it little; the two searches' "
                                      "different choices hold it below 0.7")
    assert p["is this budget enough?"] == (
        "Ranking stability, measured on this run at 8 trials per study: final-ranking τ = 0.67 (95% bootstrap "
        "interval over the seeds 0.67 to 0.67), below the 0.7 target (details under 'ranking stability').")
    curve = pd.DataFrame({"dataset": "ds", "arch": "net", "budget": [1, 2, 3], "tau": [0.2, 0.8, 0.9],
                          "top3": [1 / 3, 2 / 3, 1.0], "methods": 4})
    a.curve, a.notes = curve, ["sweep other@ds2/net has no studies on ds2/net"]
    p = dict(analyze.protocol(a).itertuples(index=False, name=None))
    assert ("ds/net: search-score τ ≥ 0.7 from 2 trials per study on (τ = 0.90, top-3 overlap 1.00 at 3 trials "
            "per study)") in p["ranking stability"]
    assert p["ranking stability"].endswith("not measured: sweep other@ds2/net has no studies on ds2/net")
    elsewhere = make_table({("ds2", "net"): FOUR}).assign(trials=8, search_seeds="0")
    apart = analyze.Analysis(make_config("analyze", replicates=["rep"]), [], one, r, env={}, replicate=elsewhere)
    assert dict(analyze.protocol(apart).itertuples(index=False, name=None))["is this budget enough?"] == (
        "Ranking stability, measured on this run at 8 trials per study: final-ranking τ not measured (the "
        "replicate shares no pair and method with this run) (details under 'ranking stability').")
    no = analyze.Analysis(make_config("analyze"), [], one, r, env={})
    assert dict(analyze.protocol(no).itertuples(index=False, name=None))["ranking stability"].startswith(
        "not measured")


def test_the_analysis_reads_two_replicate_sweeps_and_writes_the_stability_tables(tmp_path):
    # two replicates of a sweep (FT and GA, seeds 0 and 1) whose studies are filled by hand, no training:
    #   replicate 0: FT 0.2, 0.1 | 0.3, 0.3    GA 0.5, 0.05 | 0.4, 0.4     (seed 0 | seed 1)
    #   replicate 1: FT 0.3, 0.3 | 0.2, 0.2    GA 0.1, 0.1  | 0.6, 0.6
    from deepunlearn import config
    from deepunlearn.experiment import stage_experiment

    store = str(tmp_path / "store")
    scores = {0: {"ft": [[0.2, 0.1], [0.3, 0.3]], "ga": [[0.5, 0.05], [0.4, 0.4]]},
              1: {"ft": [[0.3, 0.3], [0.2, 0.2]], "ga": [[0.1, 0.1], [0.6, 0.6]]}}
    entries = []
    for rep, by_method in scores.items():
        path = tmp_path / f"rep{rep}.yaml"
        path.write_text(f"inherit: tiny\nname: stab\nmethods: [ft, ga]\nseeds: [0, 1]\nn_trials: 2\nreplicate: {rep}\n")
        entries.append(str(path))
        scfg = config.load("sweep", str(path), store=store)
        exp = stage_experiment(scfg)
        for (method, seed, name, url) in search.studies(scfg, exp):
            add_trials(search.open_study(url, name, seed), by_method[method][seed])
    table = make_table({(exp.dataset, exp.arch): {"original": (2.0, 0.5, math.nan), "retrain": (0.0, 0.95, 1.0),
                                                  "ft": (0.1, 0.9, 5.0), "ga": (0.3, 0.9, 5.0)}})
    table = table.assign(va=0.8, val_mia=np.where(table["method"] == "original", 0.7, 0.5))  # O's score ≈ 0.4
    out = tmp_path / "out"
    cfg = make_config("analyze", name="t", sweeps=entries, store=store, out=str(out), progress=False)
    a = analyze.Analysis(cfg, [], table, ranking.rank(table, n_boot=100), env={"device": "test"})
    a.report_dir.mkdir(parents=True)
    analyze.measure_stability(a)
    # budget 1: replicate 0 has FT 0.2 < GA 0.4, replicate 1 GA 0.1 < FT 0.2: τ = −1; budget 2: FT 0.1 vs GA 0.05
    # and FT 0.2 vs GA 0.1: GA ahead in both, τ = 1
    assert a.curve[["dataset", "arch", "budget", "tau"]].values.tolist() == [
        [exp.dataset, exp.arch, 1, -1.0], [exp.dataset, exp.arch, 2, 1.0]]
    agree = a.agreement.set_index("method")
    assert agree.loc["ga", "search_score"] == pytest.approx(0.05) and agree.loc["ft", "retdev"] == pytest.approx(0.1)
    assert agree.loc["ga", "vs_reference"] == ""  # GA ahead of the Original on both
    stab = dict(analyze.protocol(a).itertuples(index=False, name=None))["ranking stability"]
    assert stab == (f"{exp.dataset}/{exp.arch}: search-score τ ≥ 0.7 from 2 trials per study on (τ = 1.00, "
                    "top-3 overlap 1.00 at 2 trials per study)")
    analyze.write_tables(a)
    figs = a.figures_dir
    assert {"claims.md", "stability.md", "search-vs-final.md"} <= {p.name for p in figs.iterdir()}
    assert "| MSG and CT are among the best methods | not tested |" in (figs / "claims.md").read_text()
    # from the saved results: the same curve, no study opened
    again = analyze.Analysis(make_config("analyze", name="t", sweeps=entries, store=store, out=str(out),
                                         from_results=True, progress=False), [], table, a.ranking)
    analyze.measure_stability(again)
    pd.testing.assert_frame_equal(again.curve, a.curve, check_dtype=False)
    # a sweep without studies is reported, not created
    empty = tmp_path / "empty.yaml"
    empty.write_text("inherit: tiny\nname: nothing\nreplicate: 1\n")
    b = analyze.Analysis(make_config("analyze", name="u", sweeps=[str(empty)], store=store, out=str(out),
                                     progress=False), [], table, a.ranking)
    b.report_dir.mkdir(parents=True)
    analyze.measure_stability(b)
    assert b.curve is None and b.notes == [f"sweep {empty} has no studies on {exp.dataset}/{exp.arch}"]
    assert (tmp_path / "sweeps" / "stab").is_dir() and not (tmp_path / "sweeps" / "nothing").exists()
