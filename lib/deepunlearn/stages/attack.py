"""Attack stage: every spec E metric per (dataset, arch, method, seed); U-LiRA (spec G) on shadow models."""

from __future__ import annotations

import pandas as pd

from deepunlearn import plots, scoring
from deepunlearn.config import AttackConfig
from deepunlearn.scoring import Attack


def context(cfg: AttackConfig) -> Attack:
    """Resolve and check the config once: experiment, methods, hyperparameter dataclasses, seeds."""
    return scoring.resolve(cfg)


def run(a: Attack) -> pd.DataFrame:
    """The tidy results table: one row per (dataset, arch, method, seed), every metric; U-LiRA on its seed."""
    return scoring.table(a)


def plot_loss_histograms(a: Attack, seed: int | None = None):
    """Forget vs test loss histograms per model: what the population MIA sees (from the store)."""
    seed = a.seeds[0] if seed is None else seed
    return plots.loss_histograms(scoring.losses(a, seed), f"{a.exp.label()}: forget vs test losses (seed {seed})")


def plot_roc(a: Attack):
    """U-LiRA ROC curves of the config (None if U-LiRA is off)."""
    if not a.cfg.ulira:
        return None
    return plots.roc_figure(scoring.roc_curves(scoring.ulira_results(a)), f"U-LiRA ({a.exp.label()})")
