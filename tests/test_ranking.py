"""Spec H ranking on hand-made tables with known answers: failures, ranks, CIs, Friedman / Nemenyi, tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepunlearn import ranking
from deepunlearn.report import to_latex, to_markdown

# per pair: method -> (retdev, indisc, rte) seed means; the two seeds sit at mean ± 0.01 (rte ± 0.1)
PAIR_A = {"original": (1.0, 0.5, math.nan), "retrain": (0.0, 0.95, 1.0),
          "a": (0.1, 0.9, 10.0),  # rank 1
          "b": (0.2, 0.8, 5.0),  # ties c on RetDev, lower Indisc: rank 3
          "c": (0.2, 0.9, 3.0),  # rank 2
          "d": (0.05, 0.9, 0.5),  # best RetDev but slower than retraining: fails
          "e": (1.5, 0.9, 9.0),  # RetDev worse than the Original's: fails
          "f": (0.3, 0.4, 9.0)}  # Indisc worse than the Original's: fails
PAIR_B = {"original": (2.0, 0.6, math.nan), "retrain": (0.0, 0.95, 1.0),
          "a": (0.5, 0.9, 10.0),  # rank 2
          "b": (0.3, 0.7, 5.0),  # rank 1
          "c": (0.6, 0.9, 3.0),  # rank 3
          "d": (0.1, 0.9, 0.9),  # fails again (RTE): failed group
          "e": (0.65, 0.9, 9.0),  # passes here: 1 failure in 2 pairs, not the failed group; rank 4
          "f": (0.7, 0.5, 9.0)}  # fails again (Indisc)


def make_table(pairs: dict[tuple[str, str], dict], seeds=(0, 1)) -> pd.DataFrame:
    """A results table whose seed means are exactly the given (retdev, indisc, rte)."""
    rows = []
    for (ds, arch), methods in pairs.items():
        for m, (retdev, indisc, rte) in methods.items():
            for i, s in enumerate(seeds):
                sign = 1 if i % 2 == 0 else -1
                d = 0.0 if m == "retrain" else sign * 0.01
                rows.append({"dataset": ds, "arch": arch, "method": m, "display": m.upper(), "seed": s,
                             "ra": 0.9 + d, "fa": 0.8 - d, "ta": 0.85, "retdev": retdev + d, "indisc": indisc + d,
                             "test_mia": 0.5 + (1 - indisc) / 2, "rte": rte + (0 if m == "retrain" else sign * 0.1),
                             "unlearn_s": 1.0, "retrain_s": 10.0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def r():
    return ranking.rank(make_table({("ds1", "net"): PAIR_A, ("ds2", "net"): PAIR_B}), n_boot=200)


def test_failures_follow_the_three_criteria(r):
    f = r.failures.set_index(["dataset", "method"])
    assert f.loc[("ds1", "d"), ["fail_rte", "fail_retdev", "fail_indisc"]].tolist() == [True, False, False]
    assert f.loc[("ds1", "e"), ["fail_rte", "fail_retdev", "fail_indisc"]].tolist() == [False, True, False]
    assert f.loc[("ds1", "f"), ["fail_rte", "fail_retdev", "fail_indisc"]].tolist() == [False, False, True]
    assert sorted(f.index[f["failed"]].tolist()) == [("ds1", "d"), ("ds1", "e"), ("ds1", "f"), ("ds2", "d"),
                                                     ("ds2", "f")]
    assert not {"original", "retrain"} & set(r.failures["method"])


def test_ranks_per_pair_and_mean_rank(r):
    got = r.ranks.set_index(["dataset", "method"])["rank"]
    assert got.loc["ds1"].dropna().to_dict() == {"a": 1, "b": 3, "c": 2}
    assert got.loc["ds2"].dropna().to_dict() == {"a": 2, "b": 1, "c": 3, "e": 4}
    o = r.overall.set_index("method")
    assert o.loc[["a", "b", "c", "e"], "mean_rank"].tolist() == [1.5, 2.0, 2.5, 4.0]
    assert o["failed_group"].to_dict() == {"a": False, "b": False, "c": False, "e": False, "d": True, "f": True}
    assert o.loc["e", "failed_pairs"] == 1 and o.loc["d", "failed_pairs"] == 2
    assert r.overall["method"].tolist() == ["a", "b", "c", "e", "d", "f"]  # ranked by mean rank, failed last


def test_full_ties_share_the_mean_rank():
    g = pd.DataFrame({"retdev": [0.1, 0.1, 0.3], "indisc": [0.9, 0.9, 0.9], "rte": [2.0, 2.0, 2.0]})
    assert ranking.rank_rows(g).tolist() == [1.5, 1.5, 3.0]


def test_seed_ranks_use_each_seeds_values(r):
    s = r.seed_ranks[r.seed_ranks["dataset"] == "ds1"].pivot(index="seed", columns="method", values="rank")
    # seed 0: b and c both 0.21 RetDev, c wins on Indisc (0.91 vs 0.81); seed 1 the same at 0.19
    assert s.loc[0].to_dict() == {"a": 1, "b": 3, "c": 2} and s.loc[1].to_dict() == {"a": 1, "b": 3, "c": 2}
    assert set(r.seed_ranks["method"]) == {"a", "b", "c", "e"}


def test_summary_means_and_cis(r):
    s = r.summary.set_index(["dataset", "method", "metric"])
    row = s.loc[("ds1", "a", "retdev")]
    assert row["mean"] == pytest.approx(0.1) and row["lo"] < 0.1 < row["hi"] and row["n"] == 2
    assert math.isnan(s.loc[("ds1", "original", "rte"), "mean"])


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        x = rng.normal(3.0, 2.0, size=20)
        _, lo, hi = ranking.bootstrap_ci(x, 0.95, n_boot=1000, seed=rep)
        hits += lo <= 3.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_edge_cases():
    assert ranking.bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in ranking.bootstrap_ci([math.nan]))
    assert ranking.bootstrap_ci([1.0, math.nan, 3.0])[0] == 2.0


def test_friedman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    m = pd.DataFrame(rng.integers(0, 4, size=(12, 5)).astype(float), columns=list("vwxyz"))  # many ties
    m["v"] -= 2  # a real effect
    f = ranking.friedman(m)
    ref = stats.friedmanchisquare(*[m[c] for c in m.columns])
    assert f.statistic == pytest.approx(ref.statistic) and f.pvalue == pytest.approx(ref.pvalue)
    assert f.mean_ranks.index[0] == "v" and f.mean_ranks.mean() == pytest.approx(3.0)


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006), Table 5(a), alpha 0.05: q = 2.569 for k = 4, 3.164 for k = 10
    assert ranking.nemenyi_q(4) == pytest.approx(2.569, abs=1e-3)
    assert ranking.nemenyi_q(10) == pytest.approx(3.164, abs=1e-3)
    m = pd.DataFrame(np.arange(40.0).reshape(10, 4), columns=list("abcd"))
    f = ranking.friedman(m)
    assert f.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / 60), abs=1e-3)
    assert f.mean_ranks.tolist() == [1, 2, 3, 4]


def test_cliques_join_methods_within_the_cd():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.2, "d": 4.0})
    assert ranking.cliques(ranks, 1.3) == [["a", "b", "c"]]
    assert ranking.cliques(ranks, 0.75) == [["a", "b"], ["b", "c"]]


def test_tied_groups_on_a_hand_made_rank_table():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.2, "d": 4.0})
    # a~b and b~c are within the CD, a and c are not, d differs from all: the compact letter display
    assert ranking.tied_groups(ranks, 0.75) == {"a": "a", "b": "ab", "c": "b", "d": "c"}
    assert ranking.tied_groups(ranks, 5.0) == {"a": "a", "b": "a", "c": "a", "d": "a"}
    assert ranking.tied_groups(ranks, 0.1) == {"a": "a", "b": "b", "c": "c", "d": "d"}
    assert ranking.tied_groups(ranks, math.nan) == {"a": "", "b": "", "c": "", "d": ""}


def test_tied_groups_and_the_cd_sentence_in_the_main_table(r):
    # Friedman mean ranks a 1.50, b 1.75, c 2.75, e 4.00 with CD 2.35: {a, b, c} and {b, c, e} are tied
    assert r.friedman.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / 24), abs=1e-3)
    main = ranking.main_table(r).set_index("method")
    assert main["tied group"].to_dict() == {"ORIGINAL": "", "RETRAIN": "", "A": "a", "B": "ab", "C": "ab", "E": "b",
                                            "D": "", "F": ""}
    assert not ranking.cd_exceeds_range(r.friedman) and "2 groups" in ranking.cd_sentence(r)
    wide = ranking.Friedman(1.0, 0.5, 18, 4, pd.Series({"x": 7.0, "y": 9.5, "z": 12.0}), 5.0, 18.62, 0.05)
    assert ranking.cd_exceeds_range(wide)
    r2 = ranking.Ranking(r.summary, r.means, r.failures, r.ranks, r.overall, r.seed_ranks, wide, r.displays)
    assert ranking.cd_sentence(r2) == ("The Nemenyi critical difference (18.62 ranks at α = 0.05) exceeds the whole "
                                       "range of mean ranks (7.00 to 12.00): no two methods differ significantly.")
    assert set(ranking.tied_groups(wide.mean_ranks, wide.cd).values()) == {"a"}


def test_failure_reason_per_method_with_the_numbers(r):
    main = ranking.main_table(r).set_index("method")["why failed"]
    assert main["A"] == "" and main["ORIGINAL"] == ""
    assert main["D"] == "ds1/net: RTE 0.50 ≤ 1 | ds2/net: RTE 0.90 ≤ 1"
    assert main["E"] == "ds1/net: RetDev 1.500 ≥ 1.000 (Original)"  # passes on ds2
    assert main["F"] == "ds1/net: Indisc 0.400 ≤ 0.500 (Original) | ds2/net: Indisc 0.500 ≤ 0.600 (Original)"
    per = ranking.per_dataset_table(r, "ds1", "net").set_index("method")["why failed"]
    assert per["D"] == "RTE 0.50 ≤ 1" and per["E"] == "RetDev 1.500 ≥ 1.000 (Original)" and per["C"] == ""
    # all three criteria at once, on a hand-made row
    row = pd.Series({"fail_rte": True, "fail_retdev": True, "fail_indisc": True, "rte": 0.25, "retdev": 2.0,
                     "indisc": 0.1, "o_retdev": 1.0, "o_indisc": 0.3})
    assert ranking.failure_reason(row) == ("RTE 0.25 ≤ 1; RetDev 2.000 ≥ 1.000 (Original); "
                                           "Indisc 0.100 ≤ 0.300 (Original)")


def test_intervals_are_named_for_the_number_of_seeds(r):
    assert "range over 2 seeds" in ranking.interval_name(r) and "CI" not in ranking.interval_name(r).split("(")[0]
    assert ranking.cell(r, "ds1", "net", "a", "retdev") == "0.100 [0.090, 0.110]"  # the two seeds' values
    r3 = ranking.rank(make_table({("ds1", "net"): PAIR_A}, seeds=(0, 1, 2)), n_boot=200)
    assert ranking.interval_name(r3).startswith("mean ± half-width of the 95% bootstrap CI over 3 seeds")
    assert " ± " in ranking.cell(r3, "ds1", "net", "a", "retdev")


def test_friedman_needs_two_blocks_and_three_methods(r):
    # blocks = (dataset, arch, seed); the failed group (d, f) is left out, as in the tables
    assert r.friedman.n == 4 and r.friedman.k == 4 and list(r.friedman.mean_ranks.index) == ["a", "b", "c", "e"]
    one = ranking.friedman(pd.DataFrame([[1.0, 2.0, 3.0]], columns=list("abc")))
    assert math.isnan(one.statistic) and math.isnan(one.cd)


def test_tables_show_the_failed_group_separately(r):
    main = ranking.main_table(r)
    assert main["group"].tolist() == ["reference"] * 2 + ["ranked"] * 4 + ["failed"] * 2
    assert list(main.columns[-4:]) == ["mean rank", "tied group", "failed", "why failed"]
    assert main["method"].tolist() == ["ORIGINAL", "RETRAIN", "A", "B", "C", "E", "D", "F"]
    row = main.set_index("method").loc["E"]
    assert (row["ds1/net rank"], row["ds2/net rank"], row["mean rank"], row["failed"]) == ("failed", "4", "4.00", "1/2")
    md, tex = to_markdown(main), to_latex(main, "Main", "tab:main")
    assert md.index("**ranked**") < md.index("**failed**") and "| A |" in md
    assert tex.count(r"\midrule") == 3 and r"\textit{failed}" in tex and r"RTE 0.50 $\le$ 1" in tex
    per = ranking.per_dataset_table(r, "ds1", "net")
    assert list(per.columns[2:]) == ["RA", "FA", "TA", "RR", "FR", "TR", "RetDev", "Indisc", "T-MIA", "RTE", "rank",
                                  "why failed"]
    assert per.set_index("method").loc["A", "RA"] == "90.00 [89.00, 91.00]"
    assert ranking.per_arch_table(r).set_index("method").loc["A", "net mean rank"] == "1.50"
    assert "ORIGINAL" not in set(ranking.rte_table(r)["method"])
