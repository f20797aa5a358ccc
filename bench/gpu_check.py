"""The one GPU check (`make gpu-check`, under 5 minutes on one GPU): throughput, then a tiny chain on CUDA.

1. Training throughput of resnet18 and tinyvit against the torchvision DataLoader reference
   (bench/train_throughput.py on the GPU).
2. A tiny chain on the device under bf16 autocast, for both architectures, on scikit-learn's digits
   (bundled: no download): train the Original and Retrained models, a sweep of FT (2 trials), every
   one of the 18 methods, the attack stage's metrics with a 2 x 1 U-LiRA, and the analysis. It runs
   the real code paths that differ on CUDA: generators on the device, autocast, channels_last, the
   copies to the host before numpy.

One line per stage and method (PASS/FAIL, seconds), then the first failure's traceback. Without a
CUDA device it stops at once with one sentence; `--device cpu` runs the same chain on the CPU (the
test of this script does that).

    python bench/gpu_check.py [--device cuda] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


class Checks:
    """Runs named steps, printing one line each; keeps the first failure's traceback."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.passed = 0

    def __call__(self, name: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception:  # noqa: BLE001  a check reports every failure and goes on
            print(f"FAIL {name:44s} {time.perf_counter() - t0:7.1f}s", flush=True)
            self.failures.append((name, traceback.format_exc()))
            return None
        print(f"PASS {name:44s} {time.perf_counter() - t0:7.1f}s", flush=True)
        self.passed += 1
        return out


def chain(device: str, arch: str, store: Path, check: Checks) -> None:
    """Train, sweep, unlearn every method, attack with U-LiRA and analyze, on digits with `arch`."""
    from deepunlearn import results, scoring, search
    from deepunlearn.config import AnalyzeConfig, AttackConfig, SweepConfig, TrainConfig
    from deepunlearn.experiment import Experiment
    from deepunlearn.methods import get_method, list_methods
    from deepunlearn.stages import analyze
    from deepunlearn.trained import get_reference, get_unlearned

    tcfg = TrainConfig(dataset="digits", arch=arch, seeds=[0], subset=200, epochs=1, batch_size=64, device=device,
                       store=str(store), progress=False)
    exp = Experiment(tcfg)
    if check(f"{arch}: data on {device}", lambda: exp.data) is None:
        return
    for role in ("original", "retrain"):
        check(f"{arch}: train {role}", lambda role=role: get_reference(exp.store, exp.data, arch, 0, role, exp.recipe,
                                                                        progress=False))
    sweep = SweepConfig(name="gpu-check", methods=["ft"], seeds=[0], n_trials=2, store=str(store), progress=False)

    def sweep_ft() -> None:
        search.run_worker(sweep, exp)
        search.summarize(sweep, exp)

    check(f"{arch}: sweep FT, 2 trials", sweep_ft)
    methods = list_methods(include_references=False)
    hps = {}
    for m in methods:
        spec = get_method(m)
        small = {k: 1 for k in vars(spec.make_hp()) if k == "epochs" or k.endswith("_epochs")}
        small |= {k: 32 for k in vars(spec.make_hp()) if k.endswith("batch_size")}
        hps[m] = spec.make_hp(**small)
        check(f"{arch}: unlearn {spec.display}", lambda m=m: get_unlearned(exp.store, exp.data, arch, 0, exp.recipe, m,
                                                                            hps[m]))
    acfg = AttackConfig(methods=methods, ulira=True, ulira_methods=["ft"], ulira_splits=2, ulira_forget_sets=1,
                        ulira_epochs=1, device=device, store=str(store), progress=False)
    attack = scoring.Attack(acfg, exp, methods, ["ft"], hps, [0])
    table = check(f"{arch}: attack (metrics of 20 models, 2x1 U-LiRA)", lambda: scoring.table(attack))
    if table is None:
        return
    out = store.parent / f"analysis-{arch}"
    results.save(table.assign(config="gpu-check"), out / "reports" / arch)
    check(f"{arch}: figure curves", lambda: scoring.save_curves(out / "reports" / arch / "curves" / "gpu-check.npz",
                                                                 attack))
    check(f"{arch}: analyze (ranks, tables, figures, report)",
          lambda: analyze.run(AnalyzeConfig(name=arch, attack=["gpu-check"], out=str(out), from_results=True,
                                            n_boot=100, progress=False)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--archs", default="resnet18,tinyvit")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with an "
              "NVIDIA GPU, or pass --device cpu to run the chain on the CPU.", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"gpu-check on {name}, torch {torch.__version__}", flush=True)
    check = Checks()
    if not args.skip_throughput:
        for arch, images, epochs in (("resnet18", 16384, 3), ("tinyvit", 4096, 1)):
            cmd = [sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--device", args.device,
                   "--arch", arch, "--images", str(images), "--epochs", str(epochs)]

            def bench(cmd=cmd) -> None:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=150, check=True)
                print(out.stdout.rstrip(), flush=True)

            check(f"throughput {arch} vs DataLoader", bench)
    with tempfile.TemporaryDirectory(prefix="du-gpu-check-") as tmp:
        for arch in args.archs.split(","):
            chain(args.device, arch, Path(tmp) / "store", check)
    print(f"gpu-check: {check.passed} passed, {len(check.failures)} failed", flush=True)
    if check.failures:
        name, tb = check.failures[0]
        print(f"first failure, {name}:\n{tb}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
