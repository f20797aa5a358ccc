"""Figures of the analysis (seaborn), each saved as PDF and PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; the notebook shows the saved PNGs
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from deepunlearn.ranking import REFERENCES, Ranking, cliques

sns.set_theme(style="whitegrid", context="paper")


def save(fig, folder: Path, name: str) -> Path:
    """Write `fig` as <folder>/<name>.pdf and .png, close it, and return the PNG's path."""
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.pdf", bbox_inches="tight")
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return folder / f"{name}.png"


def _pairs(table: pd.DataFrame) -> list[tuple[str, str]]:
    return list(table[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))


def _order(r: Ranking) -> list[str]:
    """Display names: ranked methods by mean rank, then the failed group."""
    return [r.displays.get(m, m) for m in r.overall["method"]]


def accuracy_gaps(table: pd.DataFrame, r: Ranking):
    """Per method: RA, FA and TA minus the Retrained model's of the same seed (percentage points); bars: the
    95% bootstrap CI over seeds, or with fewer than 3 seeds their range (min to max)."""
    ref = table.loc[table["method"] == "retrain", ["dataset", "arch", "seed", "ra", "fa", "ta"]]
    df = table[table["method"] != "retrain"].merge(ref, on=["dataset", "arch", "seed"], suffixes=("", "_r"))
    long = pd.concat([pd.DataFrame({"dataset": df["dataset"], "arch": df["arch"], "method": df["display"],
                                    "split": name, "gap": 100 * (df[k] - df[f"{k}_r"])})
                      for name, k in (("retain", "ra"), ("forget", "fa"), ("test", "ta"))])
    order = [r.displays["original"]] + _order(r) if "original" in r.displays else _order(r)
    pairs = _pairs(table)
    errorbar = ("ci", 95) if r.n_seeds >= 3 else ("pi", 100)  # a "CI" of two values is just their range
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 0.28 * len(order) + 1.5),
                             squeeze=False, sharey=True)
    for ax, (ds, arch) in zip(axes.flat, pairs):
        sub = long[(long["dataset"] == ds) & (long["arch"] == arch)]
        sns.barplot(sub, y="method", x="gap", hue="split", order=order, errorbar=errorbar, ax=ax,
                    palette=["C0", "C3", "C2"], err_kws={"linewidth": 0.8})
        ax.axvline(0, color="k", lw=0.8)
        ax.set(title=f"{ds} / {arch}", xlabel="accuracy − Retrained (pp)", ylabel="")
    fig.tight_layout()
    return fig


# label offsets tried in turn around a point (points; right-hand ones first, the way the eye reads)
OFFSETS = ((5, 3), (5, -10), (-5, 3), (-5, -10), (0, 9), (0, -15), (10, -4), (-10, -4), (14, 10), (-14, 10),
           (14, -18), (-14, -18))


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(ax, xs, ys, texts, fontsize: float = 7, avoid: tuple = ()) -> None:
    """Label points without collisions: each label takes the first offset that overlaps no earlier label, no
    point (nor an `avoid` (x, y) marker) and stays inside the axes (else the least-overlapping one)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.array([*zip(xs, ys), *avoid], dtype=float).reshape(-1, 2))
    r = 5.0 * fig.dpi / 72  # a marker and its error-bar caps, in pixels
    taken = [matplotlib.transforms.Bbox([[px - r, py - r], [px + r, py + r]]) for px, py in pts]
    for x, y, text in zip(xs, ys, texts):
        best = None
        for dx, dy in OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom")
            bb = ann.get_window_extent(renderer)
            cost = sum(_overlap(bb, t) for t in taken) + (0 if frame.contains(bb.x0, bb.y0) and
                                                          frame.contains(bb.x1, bb.y1) else bb.width * bb.height)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, bb)
            else:
                ann.remove()
            if cost == 0:
                break
        taken.append(best[2])


def _interval(r: Ranking, metric: str) -> pd.DataFrame:
    """Per (dataset, arch, method): the mean and the tables' interval (seeds' range under 3 seeds, else the CI)."""
    s = r.summary[r.summary["metric"] == metric].copy()
    few = s["n"] < 3
    s["low"] = np.where(few, s["min"], s["lo"])
    s["high"] = np.where(few, s["max"], s["hi"])
    return s[["dataset", "arch", "method", "mean", "low", "high"]]


def tradeoff(r: Ranking):
    """Indiscernibility (Test MIA) against RTE per method: seed means with their seed intervals, the Retrained
    model (RTE 1 by definition) as the target, the Original's indiscernibility as the bar to clear."""
    keys = ["dataset", "arch", "method"]
    m = _interval(r, "rte").merge(_interval(r, "indisc"), on=keys, suffixes=("_x", "_y"))
    m = m.merge(r.failures[[*keys, "failed"]], on=keys, how="left")
    pairs = _pairs(r.means)
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4.8), squeeze=False)
    for ax, (ds, arch) in zip(axes.flat, pairs):
        sub = m[(m["dataset"] == ds) & (m["arch"] == arch)]
        target = sub[sub["method"] == "retrain"]
        o = sub[sub["method"] == "original"]
        pts = sub[~sub["method"].isin(REFERENCES) & np.isfinite(sub["mean_x"]) & (sub["mean_x"] > 0)]
        for status, color, marker in (("failed", "C3", "X"), ("ranked", "C0", "o")):  # the ranked on top
            g = pts[pts["failed"] == (status == "failed")]
            if len(g):
                ax.errorbar(g["mean_x"], g["mean_y"], xerr=[g["mean_x"] - g["low_x"], g["high_x"] - g["mean_x"]],
                            yerr=[g["mean_y"] - g["low_y"], g["high_y"] - g["mean_y"]], fmt=marker, color=color,
                            ms=5, elinewidth=0.7, capsize=2, label=status)
        if len(target):
            ax.plot([1.0], target["mean_y"], marker="*", ms=14, color="gold", mec="k", ls="", zorder=5,
                    label="Retrained (target)")
        if len(o):
            ax.axhline(o["mean_y"].iloc[0], color="k", ls="--", lw=0.8, label="Original's indisc")
        ax.axvline(1, color="0.5", ls=":", lw=0.8, label="RTE 1 (retraining)")
        xs = np.concatenate([pts["low_x"], pts["high_x"], [1.0]])
        xs = xs[np.isfinite(xs) & (xs > 0)]
        ys = np.concatenate([pts["low_y"], pts["high_y"], target["mean_y"], o["mean_y"]])
        ys = ys[np.isfinite(ys)]
        ax.set_xscale("log")
        ax.set_xlim(xs.min() / 2, xs.max() * 2)  # half a doubling of room: the target and labels stay inside
        pad = 0.08 * max(ys.max() - ys.min(), 0.05) if len(ys) else 0.05
        ax.set_ylim(ys.min() - pad, ys.max() + 2 * pad)
        ax.set(title=f"{ds} / {arch}", xlabel="RTE = T_R / T_U (log)", ylabel="indiscernibility (Test MIA)")
        ax.legend(fontsize=7, loc="best")
        place_labels(ax, pts["mean_x"].to_numpy(), pts["mean_y"].to_numpy(),
                     [r.displays.get(x, x) for x in pts["method"]],
                     avoid=[(1.0, y) for y in target["mean_y"]] * 3)  # the star is bigger than a point
    fig.suptitle("Up and to the right is better; bars: the seeds' range (< 3 seeds) or the bootstrap CI",
                 fontsize=9)
    fig.tight_layout()
    return fig


def critical_difference(r: Ranking):
    """Demšar's critical-difference diagram of the Friedman mean ranks (RetDev) of the methods outside the
    failed group; a bar joins methods whose mean ranks differ by less than the Nemenyi CD (a tied group)."""
    f = r.friedman
    ranks = f.mean_ranks
    k = len(ranks)
    top = max(k, 2)
    groups = cliques(ranks, f.cd) if np.isfinite(f.cd) else []
    half = (k + 1) // 2
    label_rows = max(half, k - half)
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.25 * (label_rows + len(groups))))
    ax.set_xlim(0.4 - 0.12 * top, top + 0.6 + 0.12 * top)  # room for the labels on both sides
    y_bars = [-0.35 - 0.2 * i for i in range(len(groups))]
    y_first = (y_bars[-1] if y_bars else 0) - 0.45
    ax.set_ylim(y_first - 0.45 * label_rows, 2.0)
    ax.axis("off")
    ax.hlines(0, 1, top, color="k", lw=1)
    for i in range(1, top + 1):
        ax.vlines(i, 0, 0.12, color="k", lw=1)
        ax.text(i, 0.2, str(i), ha="center", va="bottom", fontsize=8)
    for j, (m, v) in enumerate(ranks.items()):
        left = j < half
        y = y_first - 0.45 * (j if left else k - 1 - j)
        x_text = 1 - 0.1 if left else top + 0.1
        ax.plot([v, v, x_text], [0, y, y], color="0.3", lw=0.7)
        ax.text(x_text + (-0.05 if left else 0.05), y, f"{r.displays.get(m, m)} ({v:.2f})",
                ha="right" if left else "left", va="center", fontsize=8)
    for y, clique in zip(y_bars, groups):  # the tied groups, under the axis
        ax.plot([ranks[clique[0]] - 0.04, ranks[clique[-1]] + 0.04], [y, y], color="C3", lw=3,
                solid_capstyle="round")
    if np.isfinite(f.cd):
        end = min(1 + f.cd, top)  # a CD wider than the axis is drawn to its end and said in words
        ax.plot([1, end], [1.1, 1.1], color="k", lw=2)
        wide = " — wider than the rank range: no two methods differ" if 1 + f.cd > top else ""
        ax.text(1, 1.25, f"CD = {f.cd:.2f}{wide}", ha="left", va="bottom", fontsize=8)
    title = (f"Friedman χ² = {f.statistic:.1f}, p = {f.pvalue:.2g}, {f.n} blocks, α = {f.alpha}"
             if np.isfinite(f.statistic) else f"Friedman test needs ≥ 2 blocks and ≥ 3 methods ({f.n}, {k})")
    failed = [r.displays.get(m, m) for m in r.overall.loc[r.overall["failed_group"], "method"]]
    note = f"\nFailed group, not ranked: {', '.join(failed)}" if failed else ""
    ax.set_title(f"Mean rank by RetDev (1 = closest to Retrained). {title}{note}", fontsize=9)
    return fig


def rank_distribution(r: Ranking):
    """Ranks of each non-failed method over the seeds of every (dataset, arch)."""
    df = r.seed_ranks.assign(method=lambda d: d["method"].map(lambda m: r.displays.get(m, m)))
    order = [m for m in _order(r) if m in set(df["method"])]
    fig, ax = plt.subplots(figsize=(6, 0.3 * max(len(order), 1) + 1.2))
    if len(df):
        sns.boxplot(df, y="method", x="rank", order=order, color="0.85", fliersize=0, ax=ax)
        sns.stripplot(df, y="method", x="rank", order=order, hue="seed", palette="viridis", size=4,
                      jitter=0.15, ax=ax)
    ax.set(xlabel="rank per (dataset, arch, seed), by RetDev", ylabel="",
           title="Rank distribution over seeds (non-failed methods)")
    return fig


def _display(method: str) -> str:
    from deepunlearn.errors import UserError
    from deepunlearn.methods import get_method

    try:
        return get_method(method).display
    except UserError:  # a plugin method that is not loaded in this process (the figures from saved results)
        return method


def loss_histograms(per_model: dict[str, dict[str, np.ndarray]], title: str, lo_q: float = 0.01,
                    hi_q: float = 0.99):
    """Forget vs test loss histograms, one panel per model on its own range (log when it spans a decade).

    One method's exploding losses (FF reaches 1e33) would flatten every other panel on a shared axis;
    a panel spanning more than six decades is cut to its `lo_q`..`hi_q` quantiles, the losses outside
    piled into its edge bins and their share given in its title.
    """
    n = len(per_model)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    floor = 1e-7  # losses of perfectly fitted samples underflow to 0; clip them onto the log axis
    for ax, (m, ls) in zip(axes.flat, per_model.items()):
        both = np.clip(np.concatenate([ls["forget"], ls["test"]]), floor, None)
        both = both[np.isfinite(both)]
        if len(both) == 0:
            ax.set_title(f"{_display(m)}: no finite loss", fontsize=9)
            continue
        lo, hi = both.min(), both.max()
        if hi / lo > 1e6:  # many decades: a few extreme losses would squeeze the bulk into a few bins
            lo, hi = np.quantile(both, [lo_q, hi_q])
        hi = max(hi, lo * 1.01)  # identical losses still get a bar
        log = hi / lo > 10  # under a decade a linear axis reads better (and has readable ticks)
        bins = np.logspace(np.log10(lo), np.log10(hi), 30) if log else np.linspace(lo, hi, 30)
        outside = 0
        for split, color in (("forget", "C3"), ("test", "C0")):
            x = np.clip(ls[split], floor, None)
            x = np.where(np.isfinite(x), x, hi)
            outside += int(((x < lo) | (x > hi)).sum())
            # fractions, not densities: the bins may be log-spaced
            ax.hist(np.clip(x, lo, hi), bins=bins, weights=np.full(len(x), 1 / len(x)), alpha=0.5, color=color,
                    label=split)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels collide on a short log axis
        share = outside / (len(ls["forget"]) + len(ls["test"]))
        ax.set_title(_display(m) + (f" ({100 * share:.1f}% outside, at the edges)" if outside else ""), fontsize=9)
        ax.set(xlabel="cross-entropy (this panel's range)", ylabel="fraction of the split")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure; closing stops the backend from showing it twice
    return fig


def roc_figure(curves: dict[str, dict[str, np.ndarray]], title: str):
    """U-LiRA ROC curves on log-log axes, the Original and Retrained as references."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for i, (t, c) in enumerate(curves.items()):
        style = {"original": "k--", "retrain": "k:"}.get(t, f"C{i}-")
        ax.plot(np.maximum(c["fpr"], 1e-5), np.maximum(c["tpr"], 1e-5), style,
                label=f"{_display(t)} (AUC {float(c['auc']):.3f})")
    ax.plot([1e-5, 1], [1e-5, 1], color="0.7", lw=0.8)
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure; closing stops the backend from showing it twice
    return fig
