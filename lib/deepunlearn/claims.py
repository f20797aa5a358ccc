"""The paper's headline claims (spec H, from its abstract) checked against a results table.

Each claim gets a verdict, "holds", "does not hold" or "not distinguishable at this budget" ("not
tested" when a method it names is not in the table), and a sentence with the numbers behind it. The
criteria were fixed before any result was looked at and nothing here knows what the paper found:

- **Position.** A method's place among the k non-reference methods is known only up to the Nemenyi
  test of ranking.py (Friedman on RetDev over the methods outside the failed group): it lies between
  1 + (methods significantly better) and k − (methods significantly worse), a gap of at least the
  critical difference in mean rank being significant. The failed group (spec H: fails the basic criteria
  on most pairs) comes after every ranked method, as in the tables.
- **"X is among the best"**: holds when X's worst possible position is in the top third of the k
  methods, does not hold when its best possible position is below it, else not distinguishable.
  A third: with 18 methods, the top six; neither "the single winner" nor merely "above the median".
- **"X is weak"**: the mirror image, on the bottom third.
- **"A is a better baseline than B"**: a paired comparison of RetDev over the (dataset, arch, seed)
  runs both have, by a two-sided Wilcoxon signed-rank test at α: holds when A's RetDev is lower and
  p < α, does not hold when B's is lower and p < α, else not distinguishable. A planned comparison of
  two methods, so a paired test rather than the all-pairs Nemenyi; the claims are few and named in
  advance, so α is not corrected across them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from deepunlearn import ranking
from deepunlearn.methods import get_method

HOLDS, FAILS, UNCLEAR, ABSENT = "holds", "does not hold", "not distinguishable at this budget", "not tested"
TIER = 1 / 3  # "the best" / "weak": the top / bottom third of the methods by position
CLAIMS = (("MSG and CT are among the best methods", "best", ("msg", "ct")),
          ("NG+ is a better baseline than GA", "better", ("ngplus", "ga")),
          ("NG+ is a better baseline than SRL", "better", ("ngplus", "srl")),
          ("GA and SRL are weak compared with the other methods", "weak", ("ga", "srl")))


def tier(k: int) -> int:
    """How many positions 'the top third' (or bottom third) of k methods holds."""
    return math.ceil(k * TIER)


def display(m: str, r: ranking.Ranking | None = None) -> str:
    """A method's display name: the table's, else the registry's, else its id."""
    if r is not None and m in r.displays:
        return r.displays[m]
    try:
        return get_method(m).display
    except Exception:  # noqa: BLE001  an id the registry does not know is shown as it is
        return m


def retdev_text(table: pd.DataFrame, method: str, level: float = 0.95) -> str:
    """Mean RetDev over a method's runs with its bootstrap CI (≥ 3 runs) or its range."""
    v = table.loc[table["method"] == method, "retdev"].dropna().to_numpy(float)
    if not len(v):
        return "RetDev not measured"
    mean, lo, hi = ranking.bootstrap_ci(v, level)
    if len(v) >= ranking.MIN_CI_SEEDS:
        return f"RetDev {mean:.3f} ({round(100 * level)}% CI {lo:.3f}–{hi:.3f} over {len(v)} runs)"
    return f"RetDev {mean:.3f} (range {v.min():.3f}–{v.max():.3f} over {len(v)} run{'s' if len(v) > 1 else ''})"


# ---------------------------------------------------------------- positions: "among the best", "weak"

def position(r: ranking.Ranking, method: str) -> dict | None:
    """Best and worst position 1..k of `method` that the Nemenyi test allows, with what they rest on."""
    over = r.overall.set_index("method")
    if method not in over.index:
        return None
    failed = over.index[over["failed_group"]].tolist()
    ranked = over.index[~over["failed_group"]].tolist()
    k = len(over)
    if method in failed:
        return {"best": len(ranked) + 1, "worst": k, "k": k, "ranked": len(ranked), "failed": len(failed),
                "in_failed": True, "better": [], "worse": []}
    mr, cd = r.friedman.mean_ranks, r.friedman.cd
    better, worse = [], []
    if np.isfinite(cd) and method in mr.index:
        better = [m for m in mr.index if mr[method] - mr[m] >= cd]  # ranking.cliques: within < cd is tied
        worse = [m for m in mr.index if mr[m] - mr[method] >= cd]
    return {"best": 1 + len(better), "worst": k - len(worse) - len(failed), "k": k, "ranked": len(ranked),
            "failed": len(failed), "in_failed": False, "better": better, "worse": worse}


def _position_text(r: ranking.Ranking, table: pd.DataFrame, m: str, p: dict) -> str:
    over = r.overall.set_index("method").loc[m]
    fails = f"failed on {over['failed_pairs']}/{over['pairs']} (dataset, arch) pairs"
    head = f"{display(m, r)}: position {p['best']}–{p['worst']} of {p['k']} ({p['ranked']} ranked, {p['failed']} failed)"
    if p["in_failed"]:
        why = f"in the failed group ({fails}), so after every ranked method"
    elif not np.isfinite(r.friedman.cd):
        why = f"no Friedman test ({r.friedman.n} blocks, {r.friedman.k} ranked methods), so the ranked order is untested"
    else:
        f = r.friedman
        why = (f"Friedman mean rank {f.mean_ranks.get(m, math.nan):.2f} over {f.n} blocks; "
               f"{len(p['better'])} significantly better, {len(p['worse'])} significantly worse "
               f"(Nemenyi CD {f.cd:.2f} at α = {f.alpha}); {fails}")
    return f"{head}: {why}; {retdev_text(table, m, r.level)}"


def among_best(r: ranking.Ranking, table: pd.DataFrame, method: str) -> tuple[str, str]:
    """(verdict, evidence) of 'method is among the best': its possible positions against the top third."""
    p = position(r, method)
    if p is None:
        return ABSENT, f"{display(method, r)} is not in these results"
    t = tier(p["k"])
    verdict = HOLDS if p["worst"] <= t else FAILS if p["best"] > t else UNCLEAR
    text = f"{_position_text(r, table, method, p)}; top third: positions 1–{t}"
    if p["k"] < 3:  # the top and bottom thirds of fewer than 3 methods overlap
        return UNCLEAR, f"{text}; with fewer than 3 methods a third means nothing"
    return verdict, text


def weak(r: ranking.Ranking, table: pd.DataFrame, method: str) -> tuple[str, str]:
    """(verdict, evidence) of 'method is weak': its possible positions against the bottom third."""
    p = position(r, method)
    if p is None:
        return ABSENT, f"{display(method, r)} is not in these results"
    t = tier(p["k"])
    first = p["k"] - t + 1  # first position of the bottom third
    verdict = HOLDS if p["best"] >= first else FAILS if p["worst"] < first else UNCLEAR
    text = f"{_position_text(r, table, method, p)}; bottom third: positions {first}–{p['k']}"
    if p["k"] < 3:
        return UNCLEAR, f"{text}; with fewer than 3 methods a third means nothing"
    return verdict, text


# ---------------------------------------------------------------- paired: "A is better than B"

def paired_retdev(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """RetDev of a and b side by side on every (dataset, arch, seed) where both have one."""
    wide = table[table["method"].isin([a, b])].pivot_table(index=["dataset", "arch", "seed"], columns="method",
                                                            values="retdev", aggfunc="mean")
    return wide.reindex(columns=[a, b]).dropna()


def better(table: pd.DataFrame, a: str, b: str, alpha: float = 0.05, r: ranking.Ranking | None = None,
           level: float = 0.95) -> tuple[str, str]:
    """(verdict, evidence) of 'a is better than b': two-sided Wilcoxon signed-rank on paired RetDev at α."""
    def name(m: str) -> str:
        return display(m, r) if r is not None else m

    missing = [name(m) for m in (a, b) if m not in set(table["method"])]
    if missing:
        return ABSENT, f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in these results"
    pair = paired_retdev(table, a, b)
    if pair.empty:
        return ABSENT, f"no (dataset, arch, seed) has a RetDev of both {name(a)} and {name(b)}"
    d = (pair[a] - pair[b]).to_numpy(float)
    nz = d[d != 0]
    mean, lo, hi = ranking.bootstrap_ci(d, level)
    head = (f"{name(a)} {retdev_text(table, a, level)} vs {name(b)} {retdev_text(table, b, level)}; "
            f"{name(a)} lower on {(d < 0).sum()} of {len(d)} paired runs, mean difference {mean:+.3f}")
    head += f" ({round(100 * level)}% CI {lo:+.3f} to {hi:+.3f})" if len(d) >= ranking.MIN_CI_SEEDS else ""
    if not len(nz):
        return UNCLEAR, f"{head}; every difference is zero"
    p = float(stats.wilcoxon(d).pvalue)  # zero differences dropped (zero_method="wilcox")
    ranks = stats.rankdata(np.abs(nz))
    a_lower = ranks[nz < 0].sum() > ranks[nz > 0].sum()  # the direction the signed-rank statistic points
    verdict = UNCLEAR if not p < alpha else HOLDS if a_lower else FAILS
    text = f"{head}; two-sided Wilcoxon signed-rank p = {p:.2g} (α = {alpha})"
    floor = 2 / 2 ** len(nz)  # the exact test's smallest two-sided p: every difference on one side
    if floor >= alpha:
        text += f"; with {len(nz)} non-zero differences no outcome could reach p < {alpha} (smallest p {floor:.2g})"
    return verdict, text


# ---------------------------------------------------------------- the table

def combine(verdicts: list[str]) -> str:
    """One verdict for a claim about several methods: it holds only if it holds for each."""
    for v in (FAILS, ABSENT, UNCLEAR):
        if v in verdicts:
            return v
    return HOLDS


def verdicts(table: pd.DataFrame, r: ranking.Ranking | None = None, alpha: float | None = None) -> pd.DataFrame:
    """One row per headline claim: claim, verdict, evidence (the numbers behind the verdict)."""
    r = r if r is not None else ranking.rank(table)
    alpha = r.friedman.alpha if alpha is None else alpha
    rows = []
    for claim, kind, methods in CLAIMS:
        if kind == "better":
            v, evidence = better(table, *methods, alpha=alpha, r=r, level=r.level)
        else:
            check = among_best if kind == "best" else weak
            each = [check(r, table, m) for m in methods]
            v, evidence = combine([e[0] for e in each]), ". ".join(e[1] for e in each)  # "|" would split a Markdown cell
        rows.append({"claim": claim, "verdict": v, "evidence": evidence})
    return pd.DataFrame(rows, columns=["claim", "verdict", "evidence"])
