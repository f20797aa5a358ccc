"""Sweep trial cost: the search path before this bench against today's, on the same studies and draws.

BEFORE (the reference: `run_worker(..., shared=False)` plus `use_before_path`, which puts back the old
code inside six methods and the allocator): one worker process with every core, every split evaluated
in each trial, nothing reused between the trials of a study, NCHW models, BatchNorms in the evaluations,
IU's batch-1 WoodFisher loop, the teachers of BT, SCRUB, KDE and PRMQ run on every batch of every epoch,
NG+'s two forwards per step, glibc's default malloc thresholds. AFTER (what `make study` and `make demo`
run): the narrow ResNets channels_last on CPU (bench/cpu_layout.py), evaluations on a copy with the
BatchNorms folded into the convolutions (deepunlearn.fold), IU's WoodFisher from forward-mode dot
products, each frozen teacher's logits computed once (a table per study), SCRUB's and RNI's unused
evaluations skipped in trials, the Original-only work of FF (its Fisher, for every searched batch size
in one pass), IU (its influence direction), SalUn (its saliency) and MSG (its accumulated gradient)
computed once per study and reused by later trials, NG+'s two batches in one forward, freed memory kept
for reuse (`training.hold_freed_memory`), the test split left to the final runs (the objective reads
retain, forget and val), and WORKERS one-thread worker processes that each claim whole studies, so
every study draws exactly what a one-worker sweep draws. Both paths run the same sweep (same methods,
seeds, trials per study) from scratch in fresh sweep folders, as subprocesses timed from start to exit,
and the objective values of every trial are compared. It prints trial seconds before and after, their
ratio, and where a trial's seconds go (method, evaluation passes, the MIA's 10-fold CV, model copy,
Optuna and SQLite, process start-up).

    python bench/trial_cost.py [--profile demo] [--methods all] [--trials N] [--workers 2]

N defaults to the demo sweep's trials per study (params/sweep/demo.yaml): the per-study reuse serves the
later trials of a study, so the ratio depends on the budget and is read at the one `make demo` runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def sweep_cfg(args: argparse.Namespace, name: str):
    """The bench's sweep config: `--profile`'s data and recipe, `--methods`, `--trials` trials on seed 0."""
    from deepunlearn import config

    return config.make_config("sweep", name=name, profile=args.profile, methods=args.methods.split(","),
                              n_trials=args.trials, progress=False)


def woodfisher_per_sample(model, data, v, n=None, batch_size=256):
    """IU's WoodFisher before: the reference's recursion literally, one batch-1 backward pass per sample."""
    from deepunlearn.methods import iu

    n = iu.WOODFISHER_N if n is None else n
    params = [p for p in model.parameters() if p.requires_grad]
    k, o = v.clone(), None
    for x, y in data.batches(data.indices("retain")[:n + 2], 1):
        g = iu._flat_grad(model, params, x, y)
        if o is None:
            o = g
            continue
        t = o @ g
        k -= (k @ g) / (n + t) * o
        o -= t / (n + t) * o
    return k


class PerBatchTeacher:
    """A distillation teacher as before its logits table: its forward on each batch's images, every epoch."""

    def __init__(self, model, data):
        self.model, self.data = model, data

    def __getitem__(self, idx):
        import torch

        from deepunlearn.training import forward

        with torch.no_grad():
            return forward(self.model, self.data.inputs(idx))


def use_before_path() -> None:
    """Put back, in this process, the code paths this bench's AFTER replaced inside the methods.

    (The sweep-side changes, per-study reuse, the search's own splits, the skipped unused evaluations,
    are `run_worker(..., shared=False)`.) NCHW for every model on CPU; BatchNorms left in the
    evaluations' models (no `fold`); IU's per-sample WoodFisher;
    the teachers of BT, SCRUB, KDE and PRMQ run on every batch (BT's two on the whole batch); NG+'s two
    forwards per step; glibc's default malloc thresholds.
    """
    from deepunlearn import training
    from deepunlearn.methods import bt, iu, kde, ngplus, prmq, scrub
    from deepunlearn.models import SmallResNet

    SmallResNet.cpu_channels_last = False
    training.hold_freed_memory = lambda: False  # glibc's default thresholds: fresh pages for big tensors
    training.folded = lambda model: model  # evaluations with their BatchNorms
    iu.woodfisher = woodfisher_per_sample
    ngplus.pair_logits = lambda model, x_r, x_f: (training.forward(model, x_r), training.forward(model, x_f))
    for module in (bt, kde, prmq, scrub):
        module.frozen_logits = lambda model, data, splits, key: PerBatchTeacher(model, data)


def worker(args: argparse.Namespace) -> None:
    """One sweep worker (a subprocess): prints its start-up seconds and its own wall time as JSON."""
    t0 = time.perf_counter()
    from deepunlearn import search
    if not args.shared:
        use_before_path()
    from deepunlearn.experiment import stage_experiment
    from deepunlearn.trained import get_reference

    cfg = sweep_cfg(args, args.name)
    exp = stage_experiment(cfg)
    for role in ("original", "retrain"):  # read here, so that start-up holds the whole load
        get_reference(exp.store, exp.data, exp.arch, 0, role, exp.recipe, progress=False)
    startup = time.perf_counter() - t0
    search.run_worker(cfg, exp, worker=args.worker, shared=args.shared, join=False)
    print(json.dumps({"startup": startup, "wall": time.perf_counter() - t0}))


def run_path(args: argparse.Namespace, name: str, workers: int, threads: int, shared: bool) -> dict:
    """Run the sweep `name` from scratch with `workers` processes of `threads` threads; wall and their reports."""
    from deepunlearn import paths
    from deepunlearn.experiment import stage_experiment

    cfg = sweep_cfg(args, name)
    exp = stage_experiment(cfg)
    folder = paths.sweep_dir(cfg.store, name, exp.dataset, exp.arch)
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--profile", args.profile, "--methods", args.methods, "--trials",
           str(args.trials), "--as-worker", name] + ([] if shared else ["--before"])
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--worker", str(k)], env=env, stdout=subprocess.PIPE, text=True)
             for k in range(workers)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"trial-cost: a worker of {name} failed: {outs}")
    reports = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    return {"name": name, "wall": wall, "workers": workers, "threads": threads, "reports": reports, "cfg": cfg,
            "exp": exp}


def trials(path: dict) -> pd.DataFrame:
    """One row per complete trial of the path's sweep: method, number, values, seconds, parameters."""
    from deepunlearn import search

    rows = []
    for method, studies in search.load_studies(path["cfg"], path["exp"]).items():
        for t in search.complete_trials(studies[0]):
            rows.append({"method": method, "trial": t.number, "values": t.values, "params": t.params,
                         "trial_s": t.user_attrs["trial_seconds"], "unlearn_s": t.user_attrs["unlearn_seconds"]})
    return pd.DataFrame(rows)


def evaluation_parts(profile: str, repeats: int = 5) -> dict[str, float]:
    """Seconds of one trial's evaluation pieces on the Original (in this process, all threads)."""
    from deepunlearn import metrics
    from deepunlearn.attacks.mia import mia
    from deepunlearn.experiment import experiment
    from deepunlearn.trained import get_reference

    exp = experiment(profile, progress=False)
    o, _ = get_reference(exp.store, exp.data, exp.arch, 0, "original", exp.recipe, progress=False)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    from deepunlearn import training

    outs = metrics.split_outputs(o, exp.data)
    folded, training.folded = training.folded, lambda model: model  # BEFORE's evaluations
    kept = best(lambda: metrics.split_outputs(o, exp.data, metrics.SEARCH_SPLITS))
    kept_test = best(lambda: metrics.split_outputs(o, exp.data, ("test",)))
    training.folded = folded
    return {
        "model copy": best(lambda: copy.deepcopy(o)),
        "eval passes (retain, forget, val), BatchNorms kept (before)": kept,
        "eval passes (retain, forget, val), BatchNorms folded (after)":
            best(lambda: metrics.split_outputs(o, exp.data, metrics.SEARCH_SPLITS)),
        "eval pass (test, before only)": kept_test,
        "MIA 10-fold CV (val)": best(lambda: mia(outs["forget"][1], outs["val"][1])),
        "MIA 10-fold CV (test, before only)": best(lambda: mia(outs["forget"][1], outs["test"][1])),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="demo", help="params/train/<profile>.yaml: data, model, recipe")
    p.add_argument("--methods", default="all", help="comma-separated method ids, or all")
    p.add_argument("--trials", type=int, default=None,
                   help="complete trials per study (one study per method); default: the demo sweep's")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the AFTER path")
    p.add_argument("--as-worker", dest="name", help=argparse.SUPPRESS)
    p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--before", dest="shared", action="store_false", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.trials is None:
        from deepunlearn import config

        args.trials = config.load("sweep", "demo").n_trials
    if args.name:
        return worker(args)

    import torch

    from deepunlearn.training import matmul_gflops

    cores = torch.get_num_threads()
    print(f"trial-cost: profile {args.profile}, methods {args.methods}, {args.trials} trials per study; "
          f"{cores} cores, fp32 matmul {matmul_gflops(seconds=0.5):.0f} GFLOP/s")
    from deepunlearn.experiment import stage_experiment
    from deepunlearn.trained import get_reference

    exp = stage_experiment(sweep_cfg(args, "trial-cost-before"))
    for role in ("original", "retrain"):  # trained (if missing) before either path's clock starts
        get_reference(exp.store, exp.data, exp.arch, 0, role, exp.recipe, progress=False)
    before = run_path(args, "trial-cost-before", 1, cores, shared=False)
    after = run_path(args, "trial-cost-after", args.workers, max(1, cores // args.workers), shared=True)
    tb, ta = trials(before), trials(after)
    n = len(tb)
    if len(ta) != n:
        raise SystemExit(f"trial-cost: BEFORE completed {n} trials, AFTER {len(ta)}")
    both = tb.merge(ta, on=["method", "trial"], suffixes=("_b", "_a"))
    same_params = all(a == b for a, b in zip(both.params_b, both.params_a))
    both["max_diff"] = [float(np.max(np.abs(np.subtract(a, b)))) for a, b in zip(both.values_b, both.values_a)]
    diff = both.max_diff.max()
    per_b, per_a = before["wall"] / n, after["wall"] / n
    print(f"\n{n} trials ({len(tb.method.unique())} studies x {args.trials})")
    print(f"  BEFORE  1 process x {before['threads']} threads: {before['wall']:7.1f} s, {per_b:5.2f} s per trial")
    print(f"  AFTER   {after['workers']} processes x {after['threads']} thread(s): {after['wall']:7.1f} s, "
          f"{per_a:5.2f} s per trial")
    print(f"  ratio BEFORE/AFTER: {per_b / per_a:.2f}x")
    print(f"  same hyperparameters drawn in every trial: {same_params}; "
          f"largest objective difference: {diff:.2e}; trials with any difference: {(both.max_diff > 0).sum()} of {n}")
    print("  (the paths differ in threads per process, so in float rounding; a rounding difference inside a\n"
          "  training run can flip a sample's prediction, 1/3 of 1/len(split) on an accuracy objective)")

    startup_b = before["reports"][0]["startup"]
    method_b, trial_b = tb.unlearn_s.sum(), tb.trial_s.sum()
    print("\nwhere BEFORE's seconds go (one process):")
    rows = [("method (model copy included)", method_b), ("evaluation + hyperparameter draw", trial_b - method_b),
            ("Optuna, SQLite, sampler between trials", before["wall"] - startup_b - trial_b),
            ("process start-up (imports, data, O and R)", startup_b)]
    for what, s in rows:
        print(f"  {what:44s} {s:7.1f} s  {s / before['wall']:5.1%}")
    print("one trial's pieces, measured alone on the Original (best of 5):")
    for what, s in evaluation_parts(args.profile).items():
        print(f"  {what:60s} {s:7.3f} s")
    per_worker = [r["wall"] - r["startup"] for r in after["reports"]]
    startups = ", ".join(f"{r['startup']:.1f}" for r in after["reports"])
    busy = ", ".join(f"{w:.0f}" for w in per_worker)
    print(f"AFTER: start-up {startups} s per process; busy {busy} s per process of {after['wall']:.0f} s wall")
    by = both.groupby("method").agg(trial_s_b=("trial_s_b", "sum"), trial_s_a=("trial_s_a", "sum"),
                                    max_diff=("max_diff", "max"))
    by.insert(2, "ratio", by.trial_s_b / by.trial_s_a)
    print("\nper method, trial seconds summed over its study (AFTER on one thread, sharing the machine):")
    print(by.round(2).to_string())


if __name__ == "__main__":
    main()
