"""Sweep stage: spec F studies for each (method, seed), the chosen trial per method, best.yaml.

The notebook runs one worker (more: `deepunlearn run sweep CONFIG --worker K` on any machine that
shares outputs/), so it completes the studies on its own, then reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from deepunlearn import search
from deepunlearn.config import SweepConfig
from deepunlearn.experiment import Experiment, stage_experiment
from deepunlearn.methods import get_method


@dataclass
class Sweep:
    """A sweep config and the experiment it searches on, resolved once."""

    cfg: SweepConfig
    exp: Experiment


def context(cfg: SweepConfig) -> Sweep:
    """Resolve and check the config (a space that cannot be sampled stops here, before any work)."""
    exp = stage_experiment(cfg)
    search.check_sweep(cfg, exp)
    return Sweep(cfg, exp)


def run(ctx: Sweep) -> pd.DataFrame:
    """Complete the studies (as one more worker), then pick and store the best trial per method."""
    search.run_worker(ctx.cfg, ctx.exp)
    return search.summarize(ctx.cfg, ctx.exp)


def plot_fronts(ctx: Sweep):
    """Per method: every trial's forget-accuracy gap vs MIA discernibility, the Pareto front, the chosen trial."""
    import matplotlib.pyplot as plt

    cfg = ctx.cfg
    studies = search.load_studies(cfg, ctx.exp)
    n = len(studies)
    cols = min(n, 6)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    for ax, (method, ss) in zip(axes.flat, studies.items()):
        trials = pd.concat([search.trials_table(s) for s in ss])
        trials = trials[(trials.state == "COMPLETE") & (trials.score < float("inf"))]
        front = [t.values for s in ss for t in s.best_trials if t.values and all(v < float("inf") for v in t.values)]
        best = search.best_params(ss, method, cfg.n_trials)
        ax.scatter(trials.f_fa, trials.f_mia, s=12, c="0.65", label="trials")
        if front:
            ax.scatter([v[1] for v in front], [v[3] for v in front], s=14, c="C0", label="Pareto front")
        ax.scatter([best["values"][1]], [best["values"][3]], s=80, marker="*", c="C3", label="chosen")
        ax.set_title(get_method(method).display, fontsize=9)
        ax.set_xlabel("⅓|FA − FA_R|", fontsize=8)
        ax.set_ylabel("1 − Indisc(Val MIA)", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure; closing stops the backend from showing it twice
    return fig
