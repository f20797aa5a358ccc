"""How stable a ranking is (DESIGN §8 "A ranking states its power"): Kendall's τ between replicate searches.

Two replicates of one sweep (SweepConfig.replicate 0 and K) differ only in their samplers' seeds. The
first k complete trials of each study give the budget-k choice without rerunning anything (exactly what
`search.best_params(..., n_trials=k)` would pick), so one pair of N-trial sweeps gives the whole curve of
τ between the replicates' method orders against the budget k = 1..N. The final results of the two
replicates (every seed unlearned with each replicate's chosen hyperparameters) give τ at the run's budget.
Orders are mappings item -> rank or score, lower is better; τ depends only on the order, so either will do.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import optuna
import pandas as pd

from deepunlearn import ranking, search

TARGET_TAU = 0.7  # "stable enough": τ = 0.7 means 85% of the method pairs are ordered alike
TOP = 3  # top-k overlap reported beside τ
EXTRAPOLATE_MAX = 10  # no extrapolated budget beyond this many times the measured one


# ---------------------------------------------------------------- orders

def order_ranks(order: Sequence[str]) -> dict[str, float]:
    """A best-first list of items as item -> position 1..n."""
    return {m: float(i + 1) for i, m in enumerate(order)}


def _common(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    """Items ordered by both (NaN means unordered: a method without a result), in a's order."""
    return [k for k in a if k in b and not (math.isnan(a[k]) or math.isnan(b[k]))]


def kendall_tau(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Kendall's τ-b between two orders of the same items (1 identical, −1 reversed; ties handled); NaN if < 2."""
    keys = _common(a, b)
    if len(keys) < 2:
        return math.nan
    x, y = np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)
    iu = np.triu_indices(len(keys), 1)
    dx, dy = _signs(x)[iu], _signs(y)[iu]
    n0 = len(dx)
    # τ-b: (concordant − discordant) over the geometric mean of the pairs untied in each order
    denom = math.sqrt((n0 - (dx == 0).sum()) * (n0 - (dy == 0).sum()))
    return float((dx * dy).sum() / denom) if denom > 0 else math.nan


def _signs(v: np.ndarray) -> np.ndarray:
    """sign(v_i − v_j) for every pair, by comparison, so that +inf (a failed search) orders as the worst."""
    return (v[:, None] > v[None, :]).astype(int) - (v[:, None] < v[None, :]).astype(int)


def top_k(order: Mapping[str, float], k: int = TOP) -> list[str]:
    """The k best items (lowest values); a tie at the boundary is broken by name, so the answer is reproducible."""
    return sorted((m for m in order if not math.isnan(order[m])), key=lambda m: (order[m], m))[:k]


def top_overlap(a: Mapping[str, float], b: Mapping[str, float], k: int = TOP) -> float:
    """|top-k of a ∩ top-k of b| / k over the items both order (k shrinks to their number if fewer)."""
    keys = _common(a, b)
    k = min(k, len(keys))
    if k == 0:
        return math.nan
    aa, bb = {m: a[m] for m in keys}, {m: b[m] for m in keys}
    return len(set(top_k(aa, k)) & set(top_k(bb, k))) / k


# ---------------------------------------------------------------- the search budget

def trial_scores(study: optuna.Study) -> list[float]:
    """Spec F score of each complete trial, in trial-number order (the trials `best_params` counts)."""
    return [search.score(t.values) for t in search.complete_trials(study)]


def running_best(studies: Sequence[optuna.Study], n: int) -> np.ndarray:
    """Best score over the studies (seeds) of one method at budgets 1..n: the first k trials of each study.

    A study with fewer than n trials gives all it has (as `best_params` slicing does); NaN where no study
    has a trial yet. A failed trial scores +inf and counts, as in the search.
    """
    best = np.full(n, math.nan)
    for study in studies:
        s = np.array(trial_scores(study)[:n], float)
        if len(s):
            run = np.minimum.accumulate(s)
            run = np.concatenate([run, np.full(n - len(run), run[-1])])
            best = np.fmin(best, run)  # fmin: NaN (no trial yet) loses to any score
    return best


def best_at_budget(studies: Sequence[optuna.Study], k: int) -> float:
    """Best score of one method among the first k complete trials of each of its studies (NaN if none)."""
    return float(running_best(studies, k)[-1]) if k > 0 else math.nan


def budget_bests(by_method: Mapping[str, Sequence[optuna.Study]], k: int) -> dict[str, float]:
    """method -> its best search score at budget k."""
    return {m: best_at_budget(ss, k) for m, ss in by_method.items()}


def max_budget(*by_method: Mapping[str, Sequence[optuna.Study]]) -> int:
    """The largest k at which every study of every replicate has k complete trials."""
    counts = [len(search.complete_trials(s)) for bm in by_method for ss in bm.values() for s in ss]
    return min(counts, default=0)


def tau_curve(a: Mapping[str, Sequence[optuna.Study]], b: Mapping[str, Sequence[optuna.Study]],
              top: int = TOP) -> pd.DataFrame:
    """Per budget k = 1..N: τ and top-k overlap of the two replicates' method orders by best search score."""
    methods = [m for m in a if m in b]
    n = max_budget({m: a[m] for m in methods}, {m: b[m] for m in methods})
    run_a = {m: running_best(a[m], n) for m in methods}
    run_b = {m: running_best(b[m], n) for m in methods}
    rows = []
    for k in range(1, n + 1):
        oa, ob = {m: run_a[m][k - 1] for m in methods}, {m: run_b[m][k - 1] for m in methods}
        rows.append({"budget": k, "tau": kendall_tau(oa, ob), f"top{top}": top_overlap(oa, ob, top),
                     "methods": len(_common(oa, ob))})
    return pd.DataFrame(rows, columns=["budget", "tau", f"top{top}", "methods"])


def curve_rows(curve: pd.DataFrame, every: int = 10) -> pd.DataFrame:
    """The rows of a τ curve worth a table: every budget up to `every`, then every `every`-th, and the last."""
    b = curve["budget"]
    keys = [c for c in ("dataset", "arch") if c in curve.columns]
    last = curve.groupby(keys)["budget"].transform("max") if keys else b.max()
    return curve[(b <= every) | (b % every == 0) | (b == last)].reset_index(drop=True)


def budget_needed(curve: pd.DataFrame, target: float = TARGET_TAU) -> int | None:
    """Smallest budget from which τ ≥ target holds at every larger measured budget; None if not reached."""
    ok = (curve["tau"] >= target).to_numpy()  # NaN compares False: an unmeasured τ is not stable
    if not len(ok) or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return int(curve["budget"].iloc[bad[-1] + 1 if len(bad) else 0])


def extrapolate_budget(curve: pd.DataFrame, target: float = TARGET_TAU) -> float | None:
    """A rough budget at which τ would reach `target`: a trend of τ on log(budget) over the curve's second half.

    Why this form: each doubling of the trials buys less improvement of a best-of-k score, so τ, if it
    rises, rises about linearly in log k at best; the early budgets are mostly the random first
    generation, so only the second half is fitted. It is a trend line, not a measurement: None when
    fewer than 4 budgets were measured, when τ does not rise over the second half, or when the trend
    reaches the target only beyond EXTRAPOLATE_MAX times the measured budget.
    """
    c = curve.dropna(subset=["tau"])
    n = int(curve["budget"].max()) if len(curve) else 0
    half = c[c["budget"] > n / 2]
    if n < 4 or len(half) < 2:
        return None
    slope, icpt = np.polyfit(np.log(half["budget"].to_numpy(float)), half["tau"].to_numpy(float), 1)
    if slope <= 1e-9:  # flat or falling (a flat curve fits a slope of float noise)
        return None
    log_k = (target - icpt) / slope
    return math.exp(log_k) if math.log(n) < log_k <= math.log(EXTRAPOLATE_MAX * n) else None


def budget_sentence(curve: pd.DataFrame, target: float = TARGET_TAU, top: int = TOP) -> str:
    """What the τ curve says about the budget needed, in one sentence."""
    if curve.empty:
        return "not measured: the two replicates have no complete trials in common"
    n = int(curve["budget"].max())
    last = curve.iloc[-1]
    at_n = f"τ = {last['tau']:.2f}, top-{top} overlap {last[f'top{top}']:.2f} at {n} trials per study"
    need = budget_needed(curve, target)
    if need is not None:
        return f"search-score τ ≥ {target} from {need} trials per study on ({at_n})"
    guess = extrapolate_budget(curve, target)
    trend = (f"a trend on log(budget) over the second half reaches it at about {guess:.0f}" if guess is not None
             else "no extrapolation (too few budgets, a flat or falling trend, or one beyond "
                  f"{EXTRAPOLATE_MAX}× the measured budget)")
    return f"search-score τ ≥ {target} not reached within {n} trials per study ({at_n}); {trend}"


# ---------------------------------------------------------------- final rankings of two replicates

def final_ranks(table: pd.DataFrame) -> pd.Series:
    """method -> mean over (dataset, arch) of its rank by seed-mean RetDev (ties: Indisc, RTE); references out."""
    return _ranks_of_means(ranking.seed_means(table))


def _ranks_of_means(means: pd.DataFrame) -> pd.Series:
    """final_ranks from a seed-mean table (one row per dataset, arch, method)."""
    means = means[~means["method"].isin(ranking.REFERENCES)]
    if means.empty:
        return pd.Series(dtype=float)
    ranks = pd.concat([ranking.rank_rows(g) for _, g in means.groupby(["dataset", "arch"], sort=False)])
    return ranks.groupby(means.loc[ranks.index, "method"], sort=False).mean()


def _common_pairs(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Both tables cut to their common (dataset, arch) pairs and methods, so the two rankings rank the same set."""
    pairs = set(a[["dataset", "arch"]].itertuples(index=False, name=None)) & set(
        b[["dataset", "arch"]].itertuples(index=False, name=None))
    methods = set(a["method"]) & set(b["method"])

    def cut(t: pd.DataFrame) -> pd.DataFrame:
        keep = [p in pairs for p in t[["dataset", "arch"]].itertuples(index=False, name=None)]
        return t[np.array(keep, bool) & t["method"].isin(methods).to_numpy()]

    return cut(a), cut(b), len(pairs)


def final_stability(a: pd.DataFrame, b: pd.DataFrame, top: int = TOP, n_boot: int = 0,
                    level: float = 0.95) -> dict:
    """τ and top-k overlap between the final RetDev rankings of two replicates' results tables.

    With n_boot > 0 also τ's bootstrap interval over the seeds (`ci`), the split-seed comparison (`halves`)
    and τ against the number of seeds behind both rankings (`seeds`).
    """
    a, b, pairs = _common_pairs(a, b)
    if not pairs:
        return {"tau": math.nan, f"top{top}": math.nan, "methods": 0, "pairs": 0}
    ra, rb = final_ranks(a).to_dict(), final_ranks(b).to_dict()
    out = {"tau": kendall_tau(ra, rb), f"top{top}": top_overlap(ra, rb, top), "methods": len(_common(ra, rb)),
           "pairs": pairs}
    if n_boot:
        shared = _seed_rows(a, b, pairs)
        out |= {"ci": _interval(shared, n_boot, level), "level": level, "halves": _halves(shared),
                "seeds": _seed_curve(shared)}
    return out


class SeedRows:
    """The rank keys of one results table as an array [seed, (dataset, arch, method), key], for fast reweighting.

    A ranking on a subset or a bootstrap draw of the seeds is then a weighted mean of the per-seed values, not a
    new pandas groupby; NaN values (a run without that metric) are left out of their row's mean as in
    `ranking.seed_means`.
    """

    def __init__(self, table: pd.DataFrame, seeds: Sequence[int]):
        t = table[~table["method"].isin(ranking.REFERENCES)]
        self.index = t[list(ranking.KEYS)].drop_duplicates().reset_index(drop=True)
        self.cols = [c for c, _ in ranking.ORDER]
        keyed = t.set_index(["seed", *ranking.KEYS])[self.cols]
        rows = pd.MultiIndex.from_frame(self.index)
        self.values = np.stack([keyed.xs(s, level="seed").reindex(rows).to_numpy(float) for s in seeds])

    def ranks(self, weights: np.ndarray) -> dict[str, float]:
        """final_ranks of the table with seed i counted weights[i] times."""
        ok = ~np.isnan(self.values)
        w = weights[:, None, None] * ok
        with np.errstate(invalid="ignore"):
            means = (np.where(ok, self.values, 0.0) * w).sum(0) / w.sum(0)
        return _ranks_of_means(self.index.assign(**dict(zip(self.cols, means.T)))).to_dict()


Shared = tuple[SeedRows, SeedRows, list[int]] | None  # both tables' SeedRows on their common seeds


def _shared_seeds(a: pd.DataFrame, b: pd.DataFrame) -> Shared:
    """Both tables cut to their common pairs, methods and seeds, as SeedRows; None if < 2 seeds are shared."""
    return _seed_rows(*_common_pairs(a, b))


def _seed_rows(a: pd.DataFrame, b: pd.DataFrame, pairs: int) -> Shared:
    """`_shared_seeds` of two tables already cut to their common pairs and methods."""
    ranked = lambda t: set(t.loc[~t["method"].isin(ranking.REFERENCES), "seed"].astype(int))
    seeds = sorted(ranked(a) & ranked(b))  # a seed with only the references' rows ranks nothing
    if not pairs or len(seeds) < 2:
        return None
    return SeedRows(a, seeds), SeedRows(b, seeds), seeds


def seed_interval(a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the final τ over the seeds, the same draw of seeds in both replicates.

    The two replicates' final runs share their seeds (the same Original and Retrained models per seed), so a
    draw resamples seeds, not rows, and applies the same draw to both tables.
    """
    return _interval(_shared_seeds(a, b), n_boot, level, seed)


def _interval(shared: Shared, n_boot: int, level: float, seed: int = 0) -> tuple[float, float]:
    if shared is None:
        return math.nan, math.nan
    ra, rb, seeds = shared
    n = len(seeds)
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = [np.bincount(d, minlength=n).astype(float) for d in draws]
    taus = [kendall_tau(ra.ranks(w), rb.ranks(w)) for w in counts]
    lo, hi = np.nanquantile(taus, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def seed_halves(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Mean τ over every split of the common seeds into two disjoint halves, within and across the replicates.

    `same`: one replicate's ranking on one half against its own on the other half (same hyperparameters: the
    final runs' seed noise alone). `cross`: one replicate on one half against the other replicate on the other
    half (seed noise and the two searches' different choices). Both compare rankings of the same seed counts,
    so `same − cross` is what the search's choices cost beyond the evaluation noise.
    """
    return _halves(_shared_seeds(a, b))


def _halves(shared: Shared) -> dict:
    if shared is None:
        return {"same": math.nan, "cross": math.nan, "splits": 0, "halves": (0, 0), "seeds": 0}
    ra, rb, seeds = shared
    n, k = len(seeds), len(seeds) // 2
    same, cross = [], []
    for h1 in itertools.combinations(range(n), k):
        w1 = np.isin(np.arange(n), h1).astype(float)
        w2 = 1.0 - w1
        a1, a2, b1, b2 = ra.ranks(w1), ra.ranks(w2), rb.ranks(w1), rb.ranks(w2)
        same += [kendall_tau(a1, a2), kendall_tau(b1, b2)]
        cross += [kendall_tau(a1, b2), kendall_tau(b1, a2)]
    return {"same": float(np.nanmean(same)), "cross": float(np.nanmean(cross)), "splits": len(same) // 2,
            "halves": (k, len(seeds) - k), "seeds": len(seeds)}


def seed_curve(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[int, float]]:
    """[(k, mean τ between the replicates' final rankings over every k of their shared seeds)] for k = 1..n.

    Both rankings rest on the same k seeds (the same Originals), as the final τ itself does on all n: the
    curve says whether more seeds in the final runs would raise the final τ, or whether the two searches'
    choices hold it where it is. (At most SUBSETS subsets per k, drawn without replacement, when there are more.)
    """
    return _seed_curve(_shared_seeds(a, b))


SUBSETS = 200  # k-subsets of the seeds averaged per point of the seed curve, at most (10 seeds: 252 at k = 5)


def _seed_curve(shared: Shared) -> list[tuple[int, float]]:
    if shared is None:
        return []
    ra, rb, seeds = shared
    n, rng, out = len(seeds), np.random.default_rng(0), []
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), k))
        if len(subsets) > SUBSETS:
            subsets = [subsets[i] for i in sorted(rng.choice(len(subsets), SUBSETS, replace=False))]
        taus = []
        for sub in subsets:
            w = np.isin(np.arange(n), sub).astype(float)
            taus.append(kendall_tau(ra.ranks(w), rb.ranks(w)))
        out.append((k, float(np.nanmean(taus))))
    return out


SEED_GAIN = 0.02  # a last seed that adds less than this to the final τ: more seeds would raise it little


def seeds_sentence(curve: list[tuple[int, float]], target: float = TARGET_TAU) -> str:
    """What τ against the number of shared seeds says: would more final-run seeds raise the final τ?"""
    if not curve:
        return "τ against the seeds not measured: the two results tables share fewer than 2 seeds"
    n = curve[-1][0]
    points = ", ".join(f"{t:.2f} ({k})" for k, t in curve)
    out = (f"over k of the {n} seeds (mean over k-subsets of them, the same in both replicates) the final τ is "
           f"{points} for k = 1..{n}")
    gain, last = curve[-1][1] - curve[-2][1], curve[-1][1]
    if last >= target:
        return out
    if gain < SEED_GAIN:
        return (out + f": the last seed added {gain:+.2f}, so more seeds in the final runs would raise it little; "
                f"the two searches' different choices hold it below {target}")
    return out + f": still {gain:+.2f} from the last seed, so more seeds in the final runs would raise it"


def halves_sentence(h: dict, target: float = TARGET_TAU) -> str:
    """What the split-seed comparison says about where the final ranking's instability comes from."""
    if not h["splits"]:
        return "seed halves not measured: the two results tables share fewer than 2 seeds"
    k1, k2 = h["halves"]
    out = (f"split into {k1} and {k2} of the {h['seeds']} seeds (all {h['splits']} splits), the same replicate "
           f"orders the methods on the two halves with τ = {h['same']:.2f} (the final runs' seed noise alone) and "
           f"the two replicates with τ = {h['cross']:.2f} (seed noise and the two searches' choices)")
    if h["same"] < target:
        out += (f"; with identical hyperparameters {k1} against {k2} other seeds already stay below τ {target}, so "
                "a ranking on this few seeds does not carry over to new seeds, whatever the search budget")
    return out


def final_sentence(s: dict, budget: str = "", top: int = TOP) -> str:
    """The protocol's 'ranking stability' line from `final_stability`."""
    if not s["methods"]:
        return "not measured: the replicate's results share no (dataset, arch) and method with this run's"
    out = (f"Kendall's τ = {s['tau']:.2f} between the final RetDev rankings of this run and its replicate search "
           f"(top-{top} overlap {s[f'top{top}']:.2f}; {s['methods']} methods, mean rank over {s['pairs']} "
           f"(dataset, arch) pair{'s' if s['pairs'] != 1 else ''}){' at ' + budget if budget else ''}")
    if "ci" in s and not math.isnan(s["ci"][0]):
        n = s["halves"]["seeds"]
        out += (f"; {100 * s['level']:.0f}% bootstrap interval over the {n} seeds (the same draw in both "
                f"replicates) {s['ci'][0]:.2f} to {s['ci'][1]:.2f}")
    if "halves" in s:
        out += f"; {halves_sentence(s['halves'])}"
    if "seeds" in s:
        out += f"; {seeds_sentence(s['seeds'])}"
    return out


# ---------------------------------------------------------------- search score vs final RetDev

def table_search_scores(table: pd.DataFrame, dataset: str, arch: str,
                        seeds: Sequence[int] | None = None) -> dict[str, float]:
    """method -> seed mean of the spec F search score of its final runs, each against the same seed's Retrain.

    This gives the references a search score too (the Original's is what 'doing nothing' scores).
    """
    t = table[(table["dataset"] == dataset) & (table["arch"] == arch)]
    if seeds is not None:
        t = t[t["seed"].isin(list(seeds))]
    r = t[t["method"] == "retrain"].set_index("seed")
    cols = ["ra", "fa", "va", "val_mia"]
    out: dict[str, list[float]] = {}
    for row in t[t["seed"].isin(r.index)].itertuples(index=False):
        u, ref = {c: getattr(row, c) for c in cols}, r.loc[row.seed, cols].to_dict()
        out.setdefault(row.method, []).append(search.score(search.objectives(u, ref)))
    return {m: float(np.mean(v)) for m, v in out.items()}


def pair_retdev(table: pd.DataFrame, dataset: str, arch: str) -> dict[str, float]:
    """method -> seed-mean RetDev on one (dataset, arch), the references included."""
    t = table[(table["dataset"] == dataset) & (table["arch"] == arch)]
    return t.groupby("method", sort=False)["retdev"].mean().to_dict()


def agreement(search_scores: Mapping[str, float], retdev: Mapping[str, float],
              reference: str = "original") -> pd.DataFrame:
    """Per method: best search score and final RetDev with their ranks, the shift, and flips against `reference`.

    `shift` = RetDev rank − search rank (positive: the final runs place it lower than the search did);
    `vs_reference` names a method the two orders put on opposite sides of the reference.
    """
    keys = _common(search_scores, retdev)
    s = pd.Series({m: search_scores[m] for m in keys}, dtype=float)
    f = pd.Series({m: retdev[m] for m in keys}, dtype=float)
    df = pd.DataFrame({"method": keys, "search_score": s.to_numpy(), "search_rank": s.rank().to_numpy(),
                       "retdev": f.to_numpy(), "retdev_rank": f.rank().to_numpy()})
    df["shift"] = df["retdev_rank"] - df["search_rank"]
    df["vs_reference"] = ""
    if reference in keys:
        ahead_s, ahead_f = s < s[reference], f < f[reference]
        df.loc[(ahead_s & ~ahead_f).to_numpy(), "vs_reference"] = f"beats {reference} on search, not on RetDev"
        df.loc[(~ahead_s & ahead_f).to_numpy(), "vs_reference"] = f"beats {reference} on RetDev, not on search"
        df.loc[df["method"] == reference, "vs_reference"] = "reference"
    order = df["shift"].abs().sort_values(ascending=False, kind="stable").index
    return df.loc[order].reset_index(drop=True)


def agreement_sentence(df: pd.DataFrame, reference: str = "original", most: int = 3,
                       displays: Mapping[str, str] | None = None) -> str:
    """τ between search score and final RetDev, the largest shifts, and the flips against the reference."""
    name = (displays or {}).get
    tau = kendall_tau(dict(zip(df["method"], df["search_score"])), dict(zip(df["method"], df["retdev"])))
    moved = [f"{name(r.method, r.method)} ({r.search_rank:g} → {r.retdev_rank:g})"
             for r in df.head(most).itertuples() if r.shift != 0]
    flips = df[df["vs_reference"].str.startswith("beats")]
    ref = df[df["method"] == reference]
    out = [f"Kendall's τ = {tau:.2f} between the order by best search score and by final RetDev ({len(df)} methods)"]
    if moved:
        out.append(f"largest shifts (search rank → RetDev rank): {', '.join(moved)}")
    for r in flips.itertuples():
        out.append(f"{name(r.method, r.method)} {r.vs_reference} (search {r.search_score:.3f} vs "
                   f"{ref['search_score'].iloc[0]:.3f}; RetDev {r.retdev:.3f} vs {ref['retdev'].iloc[0]:.3f})")
    return "; ".join(out) + "."
