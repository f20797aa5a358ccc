"""RTE when one of its two runs shares the machine with a competing process: before and after re-timing.

One process, one temporary store, the stages' own code (`trained.get_reference`, `trained.get_unlearned`).
The Original is trained once; the Retrained model and an FT unlearning run are then built quiet (twice for
FT: the noise floor) and in four loaded scenarios, each with a process of ours that keeps every core busy
with matmuls (as many threads as we use):

  U, one run       the load overlaps the FT run's first attempt and ends with it (another job finishing)
  U, persistent    the load stays through every attempt (nothing can re-time it quiet: it must be flagged)
  R, whole         the load overlaps the whole Retrained training and ends with it
  R, burst         the load covers the first 40% of the quiet training time, then ends

For each: BEFORE = the first run's wall time as it was measured, raw (T_R / T_U) and speed-normalised
((T_R·g_R) / (T_U·g_U), the probes' correction); AFTER = the robust time the RTE column now rests on
(loaded runs re-timed, the fastest kept; T_R = epochs × the median quiet epoch). Every RTE is printed as a ratio
against the quiet RTE of the same method (1.00 = the load changed nothing), with the speed gap the report
flags above 20%. Also, as candidate (b), this process's CPU seconds of the first run against quiet.

    python bench/rte_under_load.py [--arch smallresnet] [--epochs 6] [--ft-epochs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

from deepunlearn import trained
from deepunlearn.data import load_device_data
from deepunlearn.methods import get_method
from deepunlearn.metrics import rte, rte_at_speed, run_speed, run_timing, speed_gap
from deepunlearn.store import Store
from deepunlearn.training import Recipe, epochs_time, matmul_gflops

# the competing process: as many BLAS threads as we use, multiplying forever until we end it
LOAD = ("import torch; torch.set_num_threads({threads}); a = torch.randn(512, 512); a @ a; print('ready', flush=True)\n"
        "while True: a @ a")


class Load:
    """A competing process of ours; `stop()` ends it (idempotent), `after(seconds)` ends it later."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", LOAD.format(threads=torch.get_num_threads())],
                                     stdout=subprocess.PIPE, text=True)
        self.proc.stdout.readline()  # importing torch takes seconds: time nothing before it computes

    def stop(self) -> None:
        """End the competing process (if it still runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def after(self, seconds: float) -> threading.Timer:
        """End the load `seconds` from now, whatever runs then."""
        t = threading.Timer(seconds, self.stop)
        t.start()
        return t


@contextmanager
def wrapped(name: str, on_return: Callable[[], None], cpu: list[float]):
    """Replace `trained.<name>` with a wrapper recording each call's CPU seconds and calling `on_return` after."""
    real = getattr(trained, name)

    def wrapper(*args, **kwargs):
        c0 = time.process_time()
        out = real(*args, **kwargs)
        cpu.append(time.process_time() - c0)
        on_return()
        return out

    setattr(trained, name, wrapper)
    try:
        yield
    finally:
        setattr(trained, name, real)


def build(store: Store, fetch: Callable[[], tuple[object, dict]], name: str, load: Load | None = None,
          stop_on_return: bool = False) -> tuple[dict, float]:
    """(meta, CPU seconds of the first `trained.<name>` call) of a fresh build of what `fetch` gets, removed after."""
    cpu: list[float] = []
    with wrapped(name, (lambda: load.stop()) if load and stop_on_return else (lambda: None), cpu):
        try:
            _, meta = fetch()
        finally:
            if load:
                load.stop()
    # the next scenario builds it again: the unlearned model, or the Retrained one (the Original stays)
    for path in store.find("unlearned") if name == "run_method" else store.find("model", role="retrain"):
        store.remove(path)
    return meta, cpu[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="smallresnet")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=6, help="epochs of the Original and Retrained models")
    p.add_argument("--ft-epochs", type=int, default=2, help="epochs of the timed FT run")
    args = p.parse_args()
    data = load_device_data(args.dataset, "cpu")
    recipe = Recipe(epochs=args.epochs, batch_size=64)
    hp = get_method("ft").make_hp(epochs=args.ft_epochs, batch_size=64)
    probes = [matmul_gflops() for _ in range(40)]  # the quiet machine: its speed and the probe's own noise
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        trained.get_reference(store, data, args.arch, 0, "original", recipe, progress=False)

        def r(load: Load | None = None, stop_on_return: bool = False) -> tuple[dict, float]:
            fetch = lambda: trained.get_reference(store, data, args.arch, 0, "retrain", recipe, progress=False)
            return build(store, fetch, "fit", load, stop_on_return)

        def u(load: Load | None = None, stop_on_return: bool = False) -> tuple[dict, float]:
            fetch = lambda: trained.get_unlearned(store, data, args.arch, 0, recipe, "ft", hp)
            return build(store, fetch, "run_method", load, stop_on_return)

        u()  # warm-up: the first FT call's allocations are not the method's work (the Original warmed up R)
        quiet_r, quiet_u, quiet_u2 = r(), u(), u()
        runs = {"U, one run": (quiet_r, u(Load(), stop_on_return=True)),
                "U, persistent": (quiet_r, u(Load()))}
        burst = Load()
        timer = burst.after(0.4 * quiet_r[0]["time"])
        runs["R, burst"] = (r(burst), quiet_u)
        timer.cancel()
        runs["R, whole"] = (r(Load(), stop_on_return=True), quiet_u)

    print(f"dataset={args.dataset} arch={args.arch} threads={torch.get_num_threads()} cpus={os.cpu_count()} "
          f"R epochs={args.epochs} FT epochs={args.ft_epochs}")
    print(f"machine: fp32 matmul {statistics.median(probes):.1f} GFLOP/s (median of {len(probes)} quiet probes; "
          f"min {min(probes):.1f}, max {max(probes):.1f}: the probe's own spread)")

    def line(label: str, meta: dict, cpu: float) -> str:
        t = run_timing(meta)
        return (f"  {label:<13}: wall {t['wall_s']:7.2f} s at {t['wall_gflops']:6.1f} GFLOP/s, robust {t['seconds']:7.2f} s "
                f"at {t['gflops']:6.1f} ({t['tries']} tr{'ies' if t['tries'] > 1 else 'y'}), CPU {cpu:7.2f} s")

    print("runs:")
    print(line("R quiet", *quiet_r))
    print(line("FT quiet", *quiet_u))
    print(line("FT quiet 2", *quiet_u2))
    hist = runs["R, burst"][0][0]["history"]
    for name, (rr, uu) in runs.items():
        loaded = rr if name.startswith("R") else uu
        print(line(f"{name}", *loaded))
    print("  R, burst epochs: " + ", ".join(f"{h['seconds']:.2f} s ({h['gflops']['before']:.0f}->{h['gflops']['after']:.0f})"
                                           for h in hist)
          + f"; epochs × median of all {epochs_time([h['seconds'] for h in hist], args.epochs):.2f} s")

    def ratios(rr: tuple[dict, float], uu: tuple[dict, float]) -> dict[str, float]:
        tr, tu = run_timing(rr[0]), run_timing(uu[0])
        return {"raw": rte(tr["wall_s"], tu["wall_s"]),
                "speed": rte_at_speed(tr["wall_s"], run_speed(rr[0]["gflops"]), tu["wall_s"], run_speed(uu[0]["gflops"])),
                "robust": rte(tr["seconds"], tu["seconds"]), "cpu": rr[1] / uu[1],
                "gap_before": speed_gap(tr["wall_gflops"], tu["wall_gflops"]), "gap_after": speed_gap(tr["gflops"], tu["gflops"])}

    q = ratios(quiet_r, quiet_u)
    noise = ratios(quiet_r, quiet_u2)
    print(f"quiet RTE: raw {q['raw']:.2f}, speed-normalised {q['speed']:.2f}, robust {q['robust']:.2f}, "
          f"CPU {q['cpu']:.2f}")
    print("RTE loaded / quiet (1.00 = undistorted):       BEFORE raw  BEFORE speed-norm.  AFTER robust   (b) CPU time"
          "   speed gap before -> after (flag > 20%)")
    for name, pair in [("quiet again (noise)", (quiet_r, quiet_u2)), *runs.items()]:
        x = noise if name.startswith("quiet") else ratios(*pair)
        flag = "flagged" if x["gap_after"] > 0.2 else "not flagged"
        print(f"  {name:<44}: {x['raw'] / q['raw']:10.2f}  {x['speed'] / q['speed']:18.2f}  "
              f"{x['robust'] / q['robust']:12.2f}  {x['cpu'] / q['cpu']:13.2f}   "
              f"{100 * x['gap_before']:5.0f}% -> {100 * x['gap_after']:4.0f}% ({flag})")


if __name__ == "__main__":
    main()
