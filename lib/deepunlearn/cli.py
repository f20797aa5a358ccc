"""`deepunlearn` command line: run a stage, show a config, datasets, split sizes, the method registry, store checks.

`deepunlearn run STAGE CONFIG [--set KEY=VALUE ...] [--worker K]` is the one way to run a stage:
make, the README and a Slurm job all call it. Without --worker it renders the stage's notebook
(outputs/nb/<stage>/<config>.ipynb); `--worker K` runs one worker of the stage's units instead
(models, runs, scored rows, U-LiRA shadows, the sweep's trials), for other processes or machines
that share outputs/; the notebook rendered afterwards reads what they built.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from deepunlearn.errors import UserError


def cmd_datasets(args: argparse.Namespace) -> None:
    """List the dataset registry with where each dataset was found."""
    from deepunlearn.data import get_dataset_info, list_datasets, locate

    for name in list_datasets():
        info = get_dataset_info(name)
        where = locate(name, args.data_root)
        print(f"{name:14s} classes={info.num_classes:<4d} size={info.img_size:<4d} "
              f"{'found: ' + str(where) if where else 'missing'}")


def cmd_split(args: argparse.Namespace) -> None:
    """Print the spec A.3 split sizes and checksum as JSON, reading only the files' lengths."""
    from deepunlearn.data import get_dataset_info, make_splits, split_checksum, split_sizes
    from deepunlearn.data.registry import require

    info = get_dataset_info(args.dataset)
    n_train, n_test = info.lengths(require(args.dataset, args.data_root))
    splits = make_splits(n_train, n_test, args.subset)
    print(json.dumps({"dataset": args.dataset, "subset": args.subset, **split_sizes(splits),
                      "sha256": split_checksum(splits)}, indent=2))


def cmd_methods(args: argparse.Namespace) -> None:
    """Print the method registry: id, display name, searched hyperparameters."""
    from deepunlearn.methods import get_method, list_methods

    rows = [(n, get_method(n).display, ", ".join(get_method(n).searched()) or "-") for n in list_methods()]
    if args.markdown:
        print("| id | name | paper | idea | searched hyperparameters |\n|---|---|---|---|---|")
        for n, d, s in rows:
            spec = get_method(n)
            print(f"| `{n}` | {d} | {spec.paper or '-'} | {spec.idea or '-'} | {s} |")
        return
    for n, d, s in rows:
        print(f"{n:10s} {d:10s} {s}")


def cmd_store(args: argparse.Namespace) -> int:
    """`store verify`: check every artifact against its hashes; `store repair`: also remove the bad ones."""
    from deepunlearn.store import Store

    store = Store(args.store)
    if not store.root.is_dir():
        raise UserError(f"No store at {store.root}; pass the store folder with --store.")
    t0 = time.perf_counter()
    bad, recorded, n = store.verify()
    busy = 0
    for d in recorded:
        print(f"hashed  {d.relative_to(store.root)} (stored before hashes were kept; trusted from now on)")
    for d, problem in bad:
        if args.action == "repair":
            gone = store.remove(d)
            busy += not gone
            print(f"{'removed' if gone else 'BUSY   '} {d.relative_to(store.root)}: {problem}"
                  + ("" if gone else " (being rebuilt by another process; left alone)"))
        else:
            print(f"BAD     {d.relative_to(store.root)}: {problem}")
    seconds = time.perf_counter() - t0
    print(f"{n} artifacts checked in {seconds:.1f}s: {len(bad)} bad"
          + (", removed: rerun the stages to rebuild them" if args.action == "repair" and bad else "")
          + (f"; run `deepunlearn store repair --store {store.root}` to remove them" if args.action == "verify"
             and bad else ""))
    return 1 if (bad and args.action == "verify") or busy else 0


def cmd_run(args: argparse.Namespace) -> int:
    """Render a stage notebook, or run one worker of it."""
    from deepunlearn import paths

    t0 = time.time()
    if args.worker is not None:
        from deepunlearn import config, units

        if args.stage == "analyze":
            raise UserError("The analyze stage has no units to share; run it without --worker.")
        cfg = config.load(args.stage, args.config, args.set)
        built = units.run_worker(args.stage, cfg, worker=args.worker)
        print(f"{args.stage} worker {args.worker} done in {time.time() - t0:.0f}s: {built} "
              f"{'trials' if args.stage == 'sweep' else 'units'} built here", flush=True)
        return 0
    from deepunlearn import config, preflight
    from deepunlearn.render import render

    preflight.check(args.stage, config.load(args.stage, args.config, args.set))  # one sentence before a kernel starts
    what = " ".join([f"{args.stage}/{args.config}", *(f"--set {s}" for s in args.set)])
    print(f"[{time.strftime('%H:%M:%S')}] {what}: rendering", flush=True)
    path = render(args.stage, args.config, args.set, name=args.name)
    seconds = time.time() - t0
    import torch

    from deepunlearn.training import matmul_gflops

    # beside the time, this machine's speed: times from two machines compare only through it
    speed = f"fp32 matmul {matmul_gflops(seconds=0.2):.0f} GFLOP/s on {torch.get_num_threads()} threads"
    print(f"[{time.strftime('%H:%M:%S')}] {what}: done in {seconds:.0f}s ({speed}, measured now) -> "
          f"{path.relative_to(paths.root()) if path.is_relative_to(paths.root()) else path}", flush=True)
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    """Spread a stage's units over jobs (Slurm job arrays or local processes), then render its notebook."""
    from deepunlearn import config, launch, paths, preflight

    lcfg = config.load("launch", args.using)
    if lcfg.executor not in ("local", "slurm"):
        raise UserError(f"executor={lcfg.executor!r} in params/launch/{args.using}.yaml; choose local or slurm.")
    if lcfg.workers < 1:
        raise UserError(f"workers={lcfg.workers} in params/launch/{args.using}.yaml; give at least 1.")
    if args.stage == "analyze":
        raise UserError("The analyze stage has no units to spread; run it with `deepunlearn run analyze CONFIG`.")
    preflight.check(args.stage, config.load(args.stage, args.config, args.set))  # before anything is submitted
    sets = [a for s in args.set for a in ("--set", s)]
    from deepunlearn.render import output_name

    name = args.name or output_name(args.config, config.parse_sets(args.set))  # the notebook's name, as run names it
    commands = [[sys.executable, "-m", "deepunlearn.cli", "run", args.stage, args.config, "--worker", str(k), *sets]
                for k in range(lcfg.workers)]
    res = launch.Resources(gpus_per_node=lcfg.gpus_per_node, cpus_per_task=lcfg.cpus_per_task, mem_gb=lcfg.mem_gb,
                           timeout_min=lcfg.timeout_min, partition=lcfg.partition, account=lcfg.account,
                           max_running=lcfg.max_running, slurm={k: str(v) for k, v in lcfg.slurm.items()})
    logs = paths.logs_dir(f"{args.stage}-{name}")
    env = {"DEEPUNLEARN_ROOT": str(paths.root())}  # the jobs anchor their paths where this command does
    jobs = launch.launch(commands, executor=lcfg.executor, resources=res, log_dir=logs, cwd=paths.root(),
                         name=f"du-{args.stage}-{name}", env=env)
    print(f"[{time.strftime('%H:%M:%S')}] {args.stage}/{name}: {len(jobs)} {lcfg.executor} jobs "
          f"{', '.join(j.job_id for j in jobs)}; logs in {logs}", flush=True)
    if args.no_wait:
        return 0
    results = launch.wait(jobs)
    for r in results:
        print(f"  job {r.job_id}: {r.state}" + (f" (exit status {r.returncode})" if r.returncode else ""), flush=True)
    failed = [r for r in results if r.state != "COMPLETED"]
    if failed:
        raise UserError(f"{len(failed)} of {len(results)} jobs did not complete ({failed[0].job_id}: {failed[0].state}); "
                        f"read its log in {logs} and launch again: the units they built are kept.")
    if lcfg.render:
        return cmd_run(argparse.Namespace(stage=args.stage, config=args.config, set=args.set, worker=None,
                                          name=args.name))
    return 0


def cmd_plan(args: argparse.Namespace) -> None:
    """Print the plan of a protocol: models, trials, epochs and estimated device-hours per stage."""
    import pandas as pd

    from deepunlearn import plan

    table, timed = plan.plan(args.config, args.device)
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(table.to_string(index=False, formatters={"device_hours": lambda h: f"{h:,.2f}"}))
    print(f"models: trained or unlearned (a sweep trial is one); epochs: training passes, counted in retain sets; "
          f"device_hours: per-sample training and inference times {timed}, times the {plan.OVERHEAD}x overhead "
          f"measured on the CPU demo: an order of magnitude to size an allocation with, not a promise; ulira-sweep: "
          f"the U-LiRA methods' own search on the shadows (spec G.2), when the attack names one in `ulira_best`.")


def cmd_params(args: argparse.Namespace) -> None:
    """Print a config as the stage sees it: defaults, then the params file, then --set overrides."""
    import yaml

    from deepunlearn import config

    print(yaml.safe_dump({**config.defaults(args.stage), **config.read(args.stage, args.config, args.set)},
                         sort_keys=False), end="")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `deepunlearn` command."""
    p = argparse.ArgumentParser(prog="deepunlearn", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    stages = ("train", "sweep", "unlearn", "attack", "analyze")
    r = sub.add_parser("run", help="run a stage: render notebooks/STAGE.py with params/STAGE/CONFIG.yaml")
    r.add_argument("stage", choices=stages)
    r.add_argument("config", help="a params/STAGE/*.yaml name (or a path to a .yaml file)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, the value read as YAML (e.g. --set 'methods=[ft]')")
    r.add_argument("--worker", type=int, default=None, metavar="K",
                   help="run worker K of the stage's units instead of rendering (sweep: K seeds its sampler)")
    r.add_argument("--as", dest="name", default=None, metavar="NAME",
                   help="name of the executed notebook (default: CONFIG, plus -DATASET-ARCH when --set chose them)")
    r.set_defaults(fn=cmd_run)
    la = sub.add_parser("launch", help="spread a stage's units over Slurm or local jobs, then render its notebook")
    la.add_argument("stage", choices=stages)
    la.add_argument("config")
    la.add_argument("--with", dest="using", default="local", metavar="LAUNCH",
                    help="params/launch/LAUNCH.yaml: executor, workers, per-job resources (default: local)")
    la.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a stage parameter")
    la.add_argument("--as", dest="name", default=None, metavar="NAME", help="name of the executed notebook")
    la.add_argument("--no-wait", action="store_true", help="submit and return (render later with `deepunlearn run`)")
    la.set_defaults(fn=cmd_launch)
    pl = sub.add_parser("plan", help="models, trials, epochs and estimated device-hours of a protocol, before the spend")
    pl.add_argument("config", help="a protocol: the name of its params files (paper, demo, ...)")
    pl.add_argument("--device", default="auto", help="where to measure the per-sample times (auto, cpu, cuda)")
    pl.set_defaults(fn=cmd_plan)
    pa = sub.add_parser("params", help="print a config as the stage sees it (defaults, file, overrides)")
    pa.add_argument("stage", choices=(*stages, "launch"))
    pa.add_argument("config")
    pa.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pa.set_defaults(fn=cmd_params)
    d = sub.add_parser("datasets", help="list datasets and where their files were found")
    d.add_argument("--data-root", default=None)
    d.set_defaults(fn=cmd_datasets)
    s = sub.add_parser("split", help="print split sizes and checksum as JSON")
    s.add_argument("dataset")
    s.add_argument("--subset", type=int, default=None)
    s.add_argument("--data-root", default=None)
    s.set_defaults(fn=cmd_split)
    m = sub.add_parser("methods", help="list unlearning methods and their searched hyperparameters")
    m.add_argument("--markdown", action="store_true", help="print the docs/methods.md table")
    m.set_defaults(fn=cmd_methods)
    st = sub.add_parser("store", help="verify the store's artifacts against their hashes, or remove the bad ones")
    st.add_argument("action", choices=["verify", "repair"])
    st.add_argument("--store", default="outputs/store",
                    help="the store folder (default outputs/store; relative paths are under the project root)")
    st.set_defaults(fn=cmd_store)
    args = p.parse_args(argv)
    try:
        return args.fn(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
