"""Sweep cost of recomputing the Retrained model's metrics in every trial vs once per study.

Runs the same seeded trials of one method twice in this process, on the demo models: once with R's
accuracies and loss arrays computed once per study (what the sweep does), once re-evaluating R in
every trial. Prints both times per trial and their ratio.

    python bench/sweep_reference_cache.py [--train demo] [--method ft] [--trials 6]
"""

from __future__ import annotations

import argparse
import time

import optuna

from deepunlearn import metrics, sweep
from deepunlearn.methods import SearchContext
from deepunlearn.references import get_reference
from deepunlearn.stages import train as train_stage
from deepunlearn.stages.unlearn import load_train_config


def timed_study(objective: sweep.Objective, seed: int) -> float:
    """Seconds for `objective.n_trials` trials in a fresh in-memory study."""
    study = optuna.create_study(directions=["minimize"] * 4, sampler=optuna.samplers.NSGAIIISampler(seed=seed))
    t0 = time.perf_counter()
    sweep.run_study(study, objective)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="demo")
    p.add_argument("--method", default="ft")
    p.add_argument("--trials", type=int, default=6)
    args = p.parse_args()
    tcfg = load_train_config(args.train, progress=False)
    data, recipe = train_stage.load_data(tcfg), train_stage.recipe_of(tcfg)
    store = train_stage.Store(tcfg.store)
    original, _ = get_reference(store, data, tcfg.arch, 0, "original", recipe, progress=False)
    retrained, _ = get_reference(store, data, tcfg.arch, 0, "retrain", recipe, progress=False)
    ctx = SearchContext(e_max=sweep.e_max(recipe.epochs), dataset=data.info.name)
    t0 = time.perf_counter()
    r_metrics = metrics.evaluate(retrained, data)
    once = time.perf_counter() - t0
    cached = timed_study(sweep.Objective(args.method, original, data, r_metrics, ctx, args.trials), seed=0) + once
    again = timed_study(sweep.Objective(args.method, original, data, r_metrics, ctx, args.trials,
                                        retrained=retrained, recompute_reference=True), seed=0)
    print(f"{args.trials} trials of {args.method} on {args.train} ({data.info.name}, {tcfg.arch})")
    print(f"R's metrics once per study : {cached:8.1f} s ({cached / args.trials:.2f} s/trial, R eval {once:.2f} s)")
    print(f"R's metrics in every trial : {again:8.1f} s ({again / args.trials:.2f} s/trial)")
    print(f"speed-up                   : {again / cached:8.2f}x")


if __name__ == "__main__":
    main()
