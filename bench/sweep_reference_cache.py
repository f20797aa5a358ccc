"""Sweep cost of recomputing the Retrained model's metrics in every trial vs once per study.

Runs the same seeded trials of one method twice in this process, on the demo models: once with R's
accuracies and loss arrays computed once per study (what the sweep does), once re-evaluating R in
every trial. Prints both times per trial and their ratio.

    python bench/sweep_reference_cache.py [--profile demo] [--method ft] [--trials 6]
"""

from __future__ import annotations

import argparse
import time

import optuna

from deepunlearn import metrics
from deepunlearn import search as sweep
from deepunlearn.experiment import experiment
from deepunlearn.trained import get_reference


def timed_study(objective: sweep.Objective, seed: int) -> float:
    """Seconds for `objective.n_trials` trials in a fresh in-memory study."""
    study = optuna.create_study(directions=["minimize"] * 4, sampler=optuna.samplers.NSGAIIISampler(seed=seed))
    t0 = time.perf_counter()
    sweep.run_study(study, objective)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="demo")
    p.add_argument("--method", default="ft")
    p.add_argument("--trials", type=int, default=6)
    args = p.parse_args()
    exp = experiment(args.profile, progress=False)
    data, recipe, store = exp.data, exp.recipe, exp.store
    original, _ = get_reference(store, data, exp.arch, 0, "original", recipe, progress=False)
    retrained, _ = get_reference(store, data, exp.arch, 0, "retrain", recipe, progress=False)
    ctx = sweep.search_context(exp)
    t0 = time.perf_counter()
    r_metrics = metrics.evaluate(retrained, data)
    once = time.perf_counter() - t0
    cached = timed_study(sweep.Objective(args.method, original, data, r_metrics, ctx, args.trials), seed=0) + once
    again = timed_study(sweep.Objective(args.method, original, data, r_metrics, ctx, args.trials,
                                        retrained=retrained, recompute_reference=True), seed=0)
    print(f"{args.trials} trials of {args.method} on {args.profile} ({exp.label()})")
    print(f"R's metrics once per study : {cached:8.1f} s ({cached / args.trials:.2f} s/trial, R eval {once:.2f} s)")
    print(f"R's metrics in every trial : {again:8.1f} s ({again / args.trials:.2f} s/trial)")
    print(f"speed-up                   : {again / cached:8.2f}x")


if __name__ == "__main__":
    main()
