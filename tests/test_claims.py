"""The paper's claims against synthetic results built to hold, built to fail, and too small to tell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepunlearn import claims, ranking

METHODS = ("msg", "ct", "ngplus", "ft", "scrub", "salun", "bt", "ga", "srl")  # 9: a third is 3 positions


def results(retdev: dict[str, float], pairs: int = 2, seeds: int = 30, noise: float = 0.005,
            seed: int = 0) -> pd.DataFrame:
    """A results table: per (pair, seed) each method's RetDev is its value + N(0, noise); all pass the RTE and
    Indisc criteria, so only a RetDev above the Original's (2.0) puts one in the failed group."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(pairs):
        for s in range(seeds):
            for m, v in {"original": 2.0, "retrain": 0.0, **retdev}.items():
                rows.append({"dataset": f"ds{p}", "arch": "net", "method": m, "display": m.upper(), "seed": s,
                             "retdev": v + (rng.normal(0, noise) if m not in ranking.REFERENCES else 0.0),
                             "indisc": 0.5 if m == "original" else 0.9, "rte": 1.0 if m == "retrain" else 5.0})
    return pd.DataFrame(rows)


def verdicts(table: pd.DataFrame) -> dict[str, str]:
    out = claims.verdicts(table, ranking.rank(table, n_boot=100))
    assert list(out.columns) == ["claim", "verdict", "evidence"]
    return dict(zip(out["claim"], out["verdict"]))


BEST, NG_GA, NG_SRL, WEAK = (c[0] for c in claims.CLAIMS)


def test_claims_hold_on_results_built_to_hold():
    # 60 blocks: the Nemenyi CD for 9 methods is 3.102·sqrt(9·10/360) ≈ 1.55 ranks
    table = results(dict(zip(METHODS, (0.05, 0.07, 0.15, 0.3, 0.35, 0.4, 0.45, 0.9, 0.95))))
    assert verdicts(table) == {BEST: claims.HOLDS, NG_GA: claims.HOLDS, NG_SRL: claims.HOLDS, WEAK: claims.HOLDS}
    r = ranking.rank(table, n_boot=100)
    assert claims.position(r, "msg")["best"] == 1 and claims.position(r, "msg")["worst"] == 2
    # CT (rank 2) is significantly ahead of ranks ≥ 3.55: six of them, so it can be no lower than 3rd
    assert (claims.position(r, "ct")["best"], claims.position(r, "ct")["worst"]) == (1, 3)
    evidence = claims.verdicts(table, r).set_index("claim")["evidence"]
    assert evidence[BEST].startswith("MSG: position 1–2 of 9 (9 ranked, 0 failed): Friedman mean rank 1.")
    assert "top third: positions 1–3" in evidence[BEST] and "RetDev 0.050 (95% CI" in evidence[BEST]
    assert "NGPLUS lower on 60 of 60 paired runs, mean difference -0.750" in evidence[NG_GA]
    assert "bottom third: positions 7–9" in evidence[WEAK]


def test_claims_fail_on_results_built_to_fail():
    # the same values with the roles reversed: GA and SRL best, MSG, CT and NG+ at the bottom
    table = results(dict(zip(("ga", "srl", "ft", "scrub", "salun", "bt", "msg", "ct", "ngplus"),
                             (0.05, 0.07, 0.15, 0.3, 0.35, 0.4, 0.45, 0.9, 0.95))))
    assert verdicts(table) == {BEST: claims.FAILS, NG_GA: claims.FAILS, NG_SRL: claims.FAILS, WEAK: claims.FAILS}


def test_the_failed_group_is_placed_after_every_ranked_method():
    # GA and SRL do worse than keeping the Original (RetDev 2.5 > 2.0): the failed group, positions 8–9 of 9
    values = dict(zip(METHODS, (0.05, 0.07, 0.15, 0.3, 0.35, 0.4, 0.45, 2.5, 2.6)))
    table = results(values)
    r = ranking.rank(table, n_boot=100)
    assert claims.position(r, "ga") == {"best": 8, "worst": 9, "k": 9, "ranked": 7, "failed": 2, "in_failed": True,
                                        "better": [], "worse": []}
    assert verdicts(table)[WEAK] == claims.HOLDS
    assert "in the failed group (failed on 2/2 (dataset, arch) pairs)" in claims.weak(r, table, "ga")[1]
    # MSG in the failed group instead: not among the best
    table = results(dict(values, msg=2.5, ga=0.9))
    assert verdicts(table)[BEST] == claims.FAILS


def test_claims_are_not_distinguishable_on_two_seeds_of_close_methods():
    # one pair, two seeds, RetDevs 0.30..0.38 under noise 0.05: the CD (≈ 8.5 ranks) exceeds the whole range
    table = results(dict(zip(METHODS, np.linspace(0.30, 0.38, 9))), pairs=1, seeds=2, noise=0.05)
    assert verdicts(table) == {BEST: claims.UNCLEAR, NG_GA: claims.UNCLEAR, NG_SRL: claims.UNCLEAR,
                               WEAK: claims.UNCLEAR}
    _, text = claims.better(table, "ngplus", "ga")
    assert "with 2 non-zero differences no outcome could reach p < 0.05 (smallest p 0.5)" in text


def test_a_method_that_is_not_in_the_results_is_not_tested():
    table = results({m: v for m, v in zip(METHODS, np.linspace(0.1, 0.9, 9)) if m not in ("ct", "ga")})
    got = verdicts(table)
    assert got[BEST] == claims.ABSENT and got[NG_GA] == claims.ABSENT and got[WEAK] == claims.ABSENT
    assert got[NG_SRL] == claims.HOLDS  # NG+ (0.3) vs SRL (0.9) on 60 paired runs


def test_paired_comparison_by_hand():
    # six runs, A lower on all: the exact two-sided signed-rank p is 2 / 2^6 = 0.03125 < 0.05
    rows = [{"dataset": "d", "arch": "n", "seed": s, "method": m, "retdev": v}
            for s in range(6) for m, v in (("a", 0.1 + 0.01 * s), ("b", 0.2 + 0.02 * s))]
    table = pd.DataFrame(rows)
    verdict, text = claims.better(table, "a", "b")
    assert verdict == claims.HOLDS and "p = 0.031" in text and "a lower on 6 of 6 paired runs" in text
    assert claims.better(table, "b", "a")[0] == claims.FAILS
    verdict, text = claims.better(table.assign(retdev=0.1), "a", "b")
    assert verdict == claims.UNCLEAR and text.endswith("every difference is zero")


def test_combined_verdicts():
    assert claims.combine([claims.HOLDS, claims.HOLDS]) == claims.HOLDS
    assert claims.combine([claims.HOLDS, claims.UNCLEAR]) == claims.UNCLEAR
    assert claims.combine([claims.UNCLEAR, claims.FAILS]) == claims.FAILS
    assert claims.combine([claims.HOLDS, claims.ABSENT]) == claims.ABSENT
    assert claims.tier(18) == 6 and claims.tier(9) == 3 and claims.tier(10) == 4
