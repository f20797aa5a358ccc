"""Ranks and statistics of the results table (DESIGN §8, spec H), and the paper-shaped tables built from them.

Protocol (spec H, [DECIDE]):
1. per (dataset, arch, method): the seed mean of every metric, with a 95% bootstrap CI over seeds when there are
   at least three of them (with one or two seeds the tables show the seeds' range instead);
2. a method *fails* on a (dataset, arch) if its seed-mean RTE <= 1, or its RetDev >= RetDev(Original),
   or its Indisc <= Indisc(Original);
3. the non-failed methods are ranked per (dataset, arch) by RetDev (ties: higher Indisc, then higher RTE);
4. the ranks are averaged over the pairs; a method failing on more than half of the pairs is put in the
   failed group. Rank distributions over seeds and a Friedman / Nemenyi test of the methods outside the failed
   group complete the picture: methods whose Friedman mean ranks differ by less than the critical difference
   form tied groups.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

REFERENCES = ("original", "retrain")
KEYS = ("dataset", "arch", "method")
METRICS = ("ra", "fa", "va", "ta", "rr", "fr", "tr", "retdev", "val_mia", "test_mia", "indisc", "val_indisc",
           "rte", "rte_wall", "unlearn_s", "retrain_s", "unlearn_wall_s", "retrain_wall_s", "unlearn_tries",
           "retrain_tries", "unlearn_gflops", "retrain_gflops", "speed_gap", "sape_ra",
           "sape_fa", "sape_ta", "dist_norm", "dist_l2", "dist_scaled", "ulira_auc", "ulira_tpr_at_1pct_fpr", "ulira_tpr_at_01pct_fpr", "ulira_balanced_acc",
           "ulira_mean_score")
ORDER = (("retdev", True), ("indisc", False), ("rte", False))  # rank keys; True: lower is better
SPEED_GAP = 0.2  # RTEs whose two times ran at machine speeds further apart than this are flagged
MIN_CI_SEEDS = 3  # fewer seeds than this: a bootstrap "CI" is just the seeds' range, so show the range


# ---------------------------------------------------------------- means and bootstrap CIs over seeds

def bootstrap_ci(values, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the mean of `values` (NaNs dropped; one value: a zero-width CI)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def summarize(table: pd.DataFrame, level: float = 0.95, n_boot: int = 2000) -> pd.DataFrame:
    """Long table: one row per (dataset, arch, method, metric): mean, bootstrap lo/hi, seeds' min/max, seeds n."""
    metrics = [m for m in METRICS if m in table.columns]
    rows = []
    for key, g in table.groupby(list(KEYS), sort=False):
        for m in metrics:
            mean, lo, hi = bootstrap_ci(g[m].to_numpy(dtype=float), level, n_boot)
            v = g[m].to_numpy(dtype=float)
            n = int((~np.isnan(v)).sum())
            rows.append({**dict(zip(KEYS, key)), "metric": m, "mean": mean, "lo": lo, "hi": hi, "n": n,
                         "min": float(np.nanmin(v)) if n else math.nan,
                         "max": float(np.nanmax(v)) if n else math.nan})
    return pd.DataFrame(rows)


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per (dataset, arch, method), the seed mean of every metric."""
    metrics = [m for m in METRICS if m in table.columns]
    out = table.groupby(list(KEYS), sort=False)[metrics].mean().reset_index()
    if "display" in table.columns:
        out = out.merge(table[["method", "display"]].drop_duplicates("method"), on="method", how="left")
    return out


# ---------------------------------------------------------------- failures and ranks

def failures(means: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arch, method) of the non-reference methods: which spec H criteria it fails."""
    rows = []
    for (ds, arch), g in means.groupby(["dataset", "arch"], sort=False):
        o = g[g["method"] == "original"]
        o_retdev = o["retdev"].iloc[0] if len(o) else math.inf
        o_indisc = o["indisc"].iloc[0] if len(o) else -math.inf
        for _, r in g[~g["method"].isin(REFERENCES)].iterrows():
            # written as "not better" so that a NaN counts as a failure
            f_rte, f_ret, f_ind = not r["rte"] > 1, not r["retdev"] < o_retdev, not r["indisc"] > o_indisc
            rows.append({"dataset": ds, "arch": arch, "method": r["method"], "fail_rte": f_rte,
                         "fail_retdev": f_ret, "fail_indisc": f_ind, "failed": f_rte or f_ret or f_ind,
                         "rte": r["rte"], "retdev": r["retdev"], "indisc": r["indisc"],
                         "o_retdev": o_retdev, "o_indisc": o_indisc})
    return pd.DataFrame(rows, columns=[*KEYS, "fail_rte", "fail_retdev", "fail_indisc", "failed", "rte", "retdev",
                                       "indisc", "o_retdev", "o_indisc"])


def failure_reason(row: pd.Series) -> str:
    """Which spec H criteria one row of `failures` fails, with the numbers ('' when it passes)."""
    out = []
    if row["fail_rte"]:
        out.append(f"RTE {row['rte']:.2f} ≤ 1")
    if row["fail_retdev"]:
        out.append(f"RetDev {row['retdev']:.3f} ≥ {row['o_retdev']:.3f} (Original)")
    if row["fail_indisc"]:
        out.append(f"Indisc {row['indisc']:.3f} ≤ {row['o_indisc']:.3f} (Original)")
    return "; ".join(out)


def rank_rows(g: pd.DataFrame) -> pd.Series:
    """Ranks 1..n of the rows of `g` by RetDev, then Indisc, then RTE; rows equal on all three share a mean rank."""
    keys = [(g[c] if low else -g[c]).fillna(math.inf).to_numpy() for c, low in ORDER]
    order = np.lexsort(keys[::-1])  # lexsort sorts by its last key first
    seq = pd.Series(np.empty(len(g)), index=g.index)
    seq.iloc[order] = np.arange(1, len(g) + 1, dtype=float)
    tie = pd.Series(list(zip(*keys)), index=g.index)
    return seq.groupby(tie).transform("mean")


def pair_ranks(means: pd.DataFrame, fails: pd.DataFrame) -> pd.DataFrame:
    """Rank of each non-failed method per (dataset, arch); NaN for a failed one."""
    df = fails[[*KEYS, "failed"]].merge(means, on=list(KEYS), how="left")
    df["rank"] = math.nan
    ok = ~df["failed"]
    for _, g in df[ok].groupby(["dataset", "arch"], sort=False):
        df.loc[g.index, "rank"] = rank_rows(g)
    return df[[*KEYS, "failed", "rank"]]


def overall_ranks(ranks: pd.DataFrame) -> pd.DataFrame:
    """Mean rank over the pairs a method passes, failure counts, and the failed group (fails > half the pairs)."""
    g = ranks.groupby("method", sort=False)
    out = pd.DataFrame({"mean_rank": g["rank"].mean(), "ranked_pairs": g["rank"].count(),
                        "failed_pairs": g["failed"].sum().astype(int), "pairs": g.size()})
    out["failed_group"] = out["failed_pairs"] > out["pairs"] / 2
    out = out.reset_index().sort_values(["failed_group", "mean_rank", "failed_pairs", "method"],
                                        na_position="last")
    return out.reset_index(drop=True)


def seed_ranks(table: pd.DataFrame, fails: pd.DataFrame) -> pd.DataFrame:
    """Rank distributions: per (dataset, arch, seed), the non-failed methods ranked on that seed's values."""
    ok = fails.loc[~fails["failed"], list(KEYS)]
    df = table.merge(ok, on=list(KEYS), how="inner")
    df["rank"] = math.nan
    for _, g in df.groupby(["dataset", "arch", "seed"], sort=False):
        df.loc[g.index, "rank"] = rank_rows(g)
    return df[["dataset", "arch", "seed", "method", "rank"]]


# ---------------------------------------------------------------- Friedman / Nemenyi

def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test for k methods (studentized range over sqrt 2, Demšar 2006)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def block_matrix(table: pd.DataFrame, metric: str = "retdev", by: str = "seed",
                 methods: list[str] | None = None) -> pd.DataFrame:
    """Blocks x methods matrix of `metric`: blocks are (dataset, arch, seed) rows or (dataset, arch) seed means."""
    if methods is None:
        methods = [m for m in table["method"].unique() if m not in REFERENCES]
    df = table[table["method"].isin(methods)]
    blocks = ["dataset", "arch", "seed"] if by == "seed" else ["dataset", "arch"]
    wide = df.pivot_table(index=blocks, columns="method", values=metric, aggfunc="mean")
    return wide[[m for m in methods if m in wide.columns]].dropna()


@dataclass
class Friedman:
    """Friedman test and Nemenyi critical difference over blocks x methods (rank 1 = lowest metric)."""

    statistic: float
    pvalue: float
    k: int
    n: int
    mean_ranks: pd.Series  # method -> mean rank over blocks, ascending
    q_alpha: float
    cd: float
    alpha: float


def friedman(matrix: pd.DataFrame, alpha: float = 0.05) -> Friedman:
    """Friedman chi-square (with scipy's tie correction) and the Nemenyi CD on a blocks x methods matrix."""
    n, k = matrix.shape
    r = np.apply_along_axis(stats.rankdata, 1, matrix.to_numpy(dtype=float)) if n else np.zeros((0, k))
    mean_ranks = pd.Series(r.mean(axis=0) if n else np.full(k, math.nan), index=matrix.columns).sort_values()
    if n < 2 or k < 3:  # the test needs two blocks and three methods
        return Friedman(math.nan, math.nan, k, n, mean_ranks, math.nan, math.nan, alpha)
    ties = sum((c ** 3 - c).sum() for c in (np.unique(row, return_counts=True)[1] for row in r))
    corr = 1 - ties / (n * k * (k * k - 1))
    stat = (12 * n / (k * (k + 1)) * ((r.mean(axis=0) - (k + 1) / 2) ** 2).sum()) / corr if corr > 0 else 0.0
    q = nemenyi_q(k, alpha)
    return Friedman(float(stat), float(stats.chi2.sf(stat, k - 1)), k, n, mean_ranks, q,
                    q * math.sqrt(k * (k + 1) / (6 * n)), alpha)


def cliques(mean_ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of methods (in rank order) whose mean ranks lie within `cd`: not significantly different."""
    names, vals = list(mean_ranks.index), mean_ranks.to_numpy()
    runs = []
    for i in range(len(vals)):
        j = i
        while j + 1 < len(vals) and vals[j + 1] - vals[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return [names[a:b + 1] for a, b in runs]


def tied_groups(mean_ranks: pd.Series, cd: float) -> dict[str, str]:
    """Letters per method (compact letter display): methods sharing a letter lie within `cd` of each other."""
    names = list(mean_ranks.index)
    if not np.isfinite(cd):
        return {m: "" for m in names}
    groups = cliques(mean_ranks, cd)
    alone = [[m] for m in names if not any(m in g for g in groups)]  # differs from every other method
    groups = sorted(groups + alone, key=lambda g: names.index(g[0]))
    letters = {m: "" for m in names}
    for i, g in enumerate(groups):
        for m in g:
            letters[m] += string.ascii_lowercase[i % 26]
    return letters


def cd_exceeds_range(f: Friedman) -> bool:
    """True when the critical difference is wider than the whole spread of mean ranks: no pair differs."""
    return bool(np.isfinite(f.cd) and len(f.mean_ranks) and f.cd > f.mean_ranks.max() - f.mean_ranks.min())


# ---------------------------------------------------------------- everything at once

@dataclass
class Ranking:
    """All of the analysis of one results table."""

    summary: pd.DataFrame  # long: dataset, arch, method, metric, mean, lo, hi, n
    means: pd.DataFrame  # wide seed means per (dataset, arch, method)
    failures: pd.DataFrame
    ranks: pd.DataFrame  # per (dataset, arch, method)
    overall: pd.DataFrame  # per method: mean rank, failures, failed group
    seed_ranks: pd.DataFrame
    friedman: Friedman  # over the methods outside the failed group
    displays: dict[str, str]
    level: float = 0.95  # bootstrap confidence level of the CIs

    @property
    def n_seeds(self) -> int:
        """Most seeds behind any (dataset, arch, method) mean."""
        return int(self.summary["n"].max()) if len(self.summary) else 0

    @property
    def tied(self) -> dict[str, str]:
        """Tied-group letters of the Friedman methods (empty when the test could not be run)."""
        return tied_groups(self.friedman.mean_ranks, self.friedman.cd)


def rank(table: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, alpha: float = 0.05,
         friedman_by: str = "seed") -> Ranking:
    """The spec H protocol on a tidy results table, with CIs, rank distributions and Friedman/Nemenyi."""
    means = seed_means(table)
    fails = failures(means)
    ranks = pair_ranks(means, fails)
    over = overall_ranks(ranks)
    displays = dict(zip(table["method"], table["display"] if "display" in table else table["method"]))
    # the failed group is out of the test, as it is out of the ranked part of the tables
    ranked = over.loc[~over["failed_group"], "method"].tolist()
    fr = friedman(block_matrix(table, "retdev", friedman_by, ranked), alpha)
    return Ranking(summarize(table, level, n_boot), means, fails, ranks, over, seed_ranks(table, fails), fr,
                   displays, level)


def interval_name(r: Ranking) -> str:
    """What the '±' or '[a, b]' of the tables is, in words (depends on the number of seeds)."""
    n = r.n_seeds
    if n >= MIN_CI_SEEDS:
        return f"mean ± half-width of the {round(100 * r.level)}% bootstrap CI over {n} seeds"
    if n == 2:
        return "mean [lowest, highest] of the 2 seeds (the range over 2 seeds, not a confidence interval)"
    return "the one seed's value (no interval)"


def cd_sentence(r: Ranking) -> str:
    """One sentence on what the Nemenyi critical difference says about the ranked methods."""
    f = r.friedman
    if not np.isfinite(f.cd):
        return (f"No Friedman test: it needs at least 2 blocks and 3 methods outside the failed group "
                f"(here {f.n} blocks, {f.k} method{'s' if f.k != 1 else ''}).")
    lo, hi = f.mean_ranks.min(), f.mean_ranks.max()
    if cd_exceeds_range(f):
        return (f"The Nemenyi critical difference ({f.cd:.2f} ranks at α = {f.alpha}) exceeds the whole range of "
                f"mean ranks ({lo:.2f} to {hi:.2f}): no two methods differ significantly.")
    groups = len(set("".join(r.tied.values())))
    return (f"The Nemenyi critical difference is {f.cd:.2f} ranks at α = {f.alpha} (mean ranks {lo:.2f} to "
            f"{hi:.2f}); methods sharing a tied-group letter do not differ significantly ({groups} groups).")


# ---------------------------------------------------------------- tables in the paper's shapes

def cell(r: Ranking, ds: str, arch: str, method: str, metric: str, digits: int = 3, scale: float = 1.0) -> str:
    """One metric as `interval_name` says: 'mean ± CI half-width' (≥ 3 seeds), 'mean [min, max]' (2), or '–'."""
    s = r.summary
    row = s[(s["dataset"] == ds) & (s["arch"] == arch) & (s["method"] == method) & (s["metric"] == metric)]
    if row.empty or pd.isna(row["mean"].iloc[0]):
        return "–"
    mean, lo, hi, vmin, vmax = (row[c].iloc[0] * scale for c in ("mean", "lo", "hi", "min", "max"))
    if row["n"].iloc[0] >= MIN_CI_SEEDS and hi > lo:
        return f"{mean:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"
    if row["n"].iloc[0] == 2 and vmax > vmin:
        return f"{mean:.{digits}f} [{vmin:.{digits}f}, {vmax:.{digits}f}]"
    return f"{mean:.{digits}f}"


def _pairs(r: Ranking) -> list[tuple[str, str]]:
    return list(r.means[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))


def _method_order(r: Ranking) -> list[tuple[str, str]]:
    """(group, method): the references, the ranked methods by mean rank, then the failed group."""
    out = [("reference", m) for m in REFERENCES if m in set(r.means["method"])]
    return out + [("failed" if f else "ranked", m) for m, f in zip(r.overall["method"], r.overall["failed_group"])]


def _rank_text(r: Ranking, ds: str, arch: str, method: str) -> str:
    row = r.ranks[(r.ranks["dataset"] == ds) & (r.ranks["arch"] == arch) & (r.ranks["method"] == method)]
    if row.empty:
        return ""
    return "failed" if row["failed"].iloc[0] else f"{row['rank'].iloc[0]:g}"


def _why_failed(r: Ranking, method: str, pairs: list[tuple[str, str]]) -> str:
    """The failed criteria of `method` on each pair it fails, with the numbers; the pair named when several."""
    f = r.failures
    out = []
    for ds, arch in pairs:
        row = f[(f["dataset"] == ds) & (f["arch"] == arch) & (f["method"] == method)]
        if len(row) and row["failed"].iloc[0]:
            reason = failure_reason(row.iloc[0])
            out.append(reason if len(pairs) == 1 else f"{ds}/{arch}: {reason}")
    return " | ".join(out)


def main_table(r: Ranking) -> pd.DataFrame:
    """Table 1: RetDev and Indisc (Test MIA) per (dataset, arch) with ranks; mean rank, tied group, failures, why."""
    pairs = _pairs(r)
    over = r.overall.set_index("method")
    tied = r.tied
    rows = []
    for group, m in _method_order(r):
        row = {"group": group, "method": r.displays.get(m, m)}
        for ds, arch in pairs:
            p = f"{ds}/{arch}"
            row[f"{p} RetDev"] = cell(r, ds, arch, m, "retdev")
            row[f"{p} Indisc"] = cell(r, ds, arch, m, "indisc")
            row[f"{p} rank"] = _rank_text(r, ds, arch, m)
        row["mean rank"] = f"{over.loc[m, 'mean_rank']:.2f}" if m in over.index and over.loc[m, "ranked_pairs"] else ""
        row["tied group"] = tied.get(m, "") if group == "ranked" else ""
        row["failed"] = f"{over.loc[m, 'failed_pairs']}/{over.loc[m, 'pairs']}" if m in over.index else ""
        row["why failed"] = _why_failed(r, m, pairs) if group != "reference" else ""
        rows.append(row)
    return pd.DataFrame(rows)


def speed_text(r: Ranking, ds: str, arch: str, method: str, gap: float = SPEED_GAP) -> str:
    """The largest gap over seeds between the speeds of T_U and T_R, flagged ('⚑') when above `gap`."""
    s = r.summary
    row = s[(s["dataset"] == ds) & (s["arch"] == arch) & (s["method"] == method) & (s["metric"] == "speed_gap")]
    if row.empty or pd.isna(row["max"].iloc[0]):
        return "not measured"
    worst = row["max"].iloc[0]
    return f"{100 * worst:.0f}%" + (" ⚑" if worst > gap else "")


def speed_flags(table: pd.DataFrame, gap: float = SPEED_GAP) -> str:
    """One sentence on the RTEs timed at speeds more than `gap` apart, or whose speeds were not measured."""
    if "speed_gap" not in table.columns:
        return "The machine's speed was not recorded beside these run times, so no RTE could be checked for load."
    runs = table[~table["method"].isin(REFERENCES) & table["rte"].notna()]
    far = runs[runs["speed_gap"] > gap]
    unknown = runs[runs["speed_gap"].isna()]
    if len(unknown) == len(runs):
        return (f"None of the {len(runs)} RTEs has a speed measurement (runs stored before the probes), so none "
                "could be checked for load; they are plain ratios.")
    names = [f"{d.get('display', d['method'])} (seed {d['seed']}, {100 * d['speed_gap']:.0f}%)"
             for _, d in far.iterrows()]
    out = [f"{len(far)} of the {len(runs) - len(unknown)} RTEs with speed measurements were timed at machine speeds more than {100 * gap:.0f}% apart"
           + (f": {', '.join(names)}" if names else "") + "."]
    if len(unknown):
        out.append(f"{len(unknown)} RTEs have no speed measurement (older stored runs) and are raw ratios.")
    if "unlearn_tries" in runs.columns:
        u = int((runs["unlearn_tries"] > 1).sum())
        r = runs.loc[runs["retrain_tries"] > 1, ["dataset", "arch", "seed"]].drop_duplicates()
        if u or len(r):
            out.append(f"Run again because their speed probes showed a loaded machine (the fastest time kept): "
                       f"{u} unlearning run{'s' if u != 1 else ''} and {len(r)} Retrained "
                       f"training{'s' if len(r) != 1 else ''}.")
    return " ".join(out)


def rte_table(r: Ranking) -> pd.DataFrame:
    """Table 2: RTE per (dataset, arch), the raw wall-clock ratio, seconds, the flagged speed gap; geometric mean."""
    pairs = _pairs(r)
    rows = []
    for group, m in _method_order(r):
        if m == "original":
            continue
        row = {"group": group, "method": r.displays.get(m, m)}
        for ds, arch in pairs:
            row[f"{ds}/{arch} RTE"] = cell(r, ds, arch, m, "rte", 1)
            row[f"{ds}/{arch} wall RTE"] = cell(r, ds, arch, m, "rte_wall", 1)
            row[f"{ds}/{arch} seconds"] = cell(r, ds, arch, m, "unlearn_s", 1)
            row[f"{ds}/{arch} speed gap"] = speed_text(r, ds, arch, m)
        vals = r.means.loc[r.means["method"] == m, "rte"].dropna()
        row["geo. mean RTE"] = f"{math.exp(np.log(vals).mean()):.1f}" if len(vals) and (vals > 0).all() else "–"
        rows.append(row)
    return pd.DataFrame(rows)


PER_DATASET = (("RA", "ra", 2, 100), ("FA", "fa", 2, 100), ("TA", "ta", 2, 100), ("RR", "rr", 3, 1),
               ("FR", "fr", 3, 1), ("TR", "tr", 3, 1), ("RetDev", "retdev", 3, 1), ("Indisc", "indisc", 3, 1),
               ("T-MIA", "test_mia", 3, 1), ("RTE", "rte", 1, 1))


def per_dataset_table(r: Ranking, ds: str, arch: str) -> pd.DataFrame:
    """Table 6: RA, FA, TA (%), RR, FR, TR, RetDev, Indisc, T-MIA, RTE of every method on one (dataset, arch)."""
    rows = []
    for group, m in _method_order(r):
        row = {"group": group, "method": r.displays.get(m, m)}
        row.update({name: cell(r, ds, arch, m, key, d, s) for name, key, d, s in PER_DATASET})
        row["rank"] = _rank_text(r, ds, arch, m)
        row["why failed"] = _why_failed(r, m, [(ds, arch)]) if group != "reference" else ""
        rows.append(row)
    return pd.DataFrame(rows)


ULIRA = (("AUC", "ulira_auc"), ("TPR @ 1% FPR", "ulira_tpr_at_1pct_fpr"), ("TPR @ 0.1% FPR", "ulira_tpr_at_01pct_fpr"),
         ("mean score", "ulira_mean_score"))


def ulira_table(r: Ranking, ds: str, arch: str) -> pd.DataFrame:
    """U-LiRA per attacked method on one (dataset, arch), the Original's and Retrained's values as references."""
    m = r.means[(r.means["dataset"] == ds) & (r.means["arch"] == arch)]
    if "ulira_auc" not in m.columns:
        return pd.DataFrame(columns=["group", "method", *(name for name, _ in ULIRA)])
    attacked = set(m.loc[m["ulira_auc"].notna(), "method"])
    rows = []
    for group, meth in _method_order(r):
        if meth in attacked:
            row = {"group": group, "method": r.displays.get(meth, meth)}
            row.update({name: cell(r, ds, arch, meth, key, 3) for name, key in ULIRA})
            rows.append(row)
    return pd.DataFrame(rows, columns=["group", "method", *(name for name, _ in ULIRA)])


GLOSSARY = (
    ("RA, FA, TA", "accuracy (%) on the retain, forget and test sets", "nearest the Retrained model's"),
    ("RR, FR, TR", "RA, FA, TA divided by the Retrained model's of the same seed", "nearest 1"),
    ("RetDev", "|RR − 1| + |FR − 1| + |TR − 1|, per seed, then averaged", "lower (0 = Retrained's accuracies)"),
    ("T-MIA", "accuracy of a logistic-regression attack telling forget from test losses", "nearest 0.5"),
    ("Indisc", "indiscernibility 1 − |2·T-MIA − 1|", "higher (1 = attack at chance)"),
    ("RTE", ("T_R / T_U: the Retrained model's training time over the unlearning time (wall clock); a run whose "
             "speed probes showed a loaded machine is timed again and its fastest time kept, T_R is the epochs "
             "times the median epoch"), "higher (> 1: faster than retraining)"),
    ("wall RTE", "T_R / T_U of the first runs' raw wall-clock times, as they were measured", "higher"),
    ("speed gap", "max / min − 1 of the two runs' measured speeds (largest over seeds); ⚑ above 20%", "lower"),
    ("rank", "rank by RetDev (ties: Indisc, then RTE) among the non-failed methods of a (dataset, arch)",
     "lower"),
    ("tied group", "methods sharing a letter are within the Nemenyi critical difference of each other", "–"),
    ("U-LiRA AUC", "ROC AUC of the per-sample likelihood-ratio attack on the forgotten samples",
     "nearest the Retrained's (≈ 0.5)"),
    ("TPR @ 1% / 0.1% FPR", "true positive rate of U-LiRA at a 1% / 0.1% false positive rate",
     "lower, nearest the Retrained's"),
    ("mean score", "U-LiRA membership score averaged over the forgotten samples", "nearest the Retrained's"),
)


def glossary_table() -> pd.DataFrame:
    """Every metric of the tables, what it is, and which direction is better."""
    return pd.DataFrame(GLOSSARY, columns=["metric", "what it is", "better"])


def per_arch_table(r: Ranking) -> pd.DataFrame:
    """Table 13: mean rank of each method per architecture (over that architecture's datasets), and overall."""
    ranks = r.ranks.copy()
    archs = list(dict.fromkeys(ranks["arch"]))
    rows = []
    for group, m in _method_order(r):
        if group == "reference":
            continue
        row = {"group": group, "method": r.displays.get(m, m)}
        for a in archs:
            g = ranks[(ranks["method"] == m) & (ranks["arch"] == a)]
            row[f"{a} mean rank"] = f"{g['rank'].mean():.2f}" if g["rank"].notna().any() else "–"
            row[f"{a} failed"] = f"{int(g['failed'].sum())}/{len(g)}"
        g = ranks[ranks["method"] == m]
        row["all mean rank"] = f"{g['rank'].mean():.2f}" if g["rank"].notna().any() else "–"
        rows.append(row)
    return pd.DataFrame(rows)
