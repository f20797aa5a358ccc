"""Held freed memory on CPU: glibc's default malloc thresholds against `training.hold_freed_memory`.

Each mode runs in its own subprocess (the thresholds are process-wide): the demo's model on one
thread (a sweep worker's), training steps at each batch size and evaluation passes over the demo's
search splits (3,000 images in batches of 1024, as `training.predict`). Prints per step the page
faults (the mean and the median step: a held heap still grows by 2 MB now and then) and milliseconds
of both modes and the ratio default / held; the two modes alternate, best of `--repeats`.

    python bench/held_memory.py [--arch smallresnet] [--batches 64,128,256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(arch: str, batches: list[int], steps: int, held: bool) -> dict:
    """In this process: {batch: (mean faults, median faults, seconds) per step} and the evaluation pass's."""
    import resource
    import statistics

    import torch
    import torch.nn.functional as F

    from deepunlearn import training
    from deepunlearn.models import create_model

    torch.set_num_threads(1)
    if held and not training.hold_freed_memory():
        raise SystemExit("held-memory: glibc's mallopt is not available here (not Linux/glibc)")
    model = training.to_device(create_model(arch, 10, seed=0), "cpu")
    opt = training.sgd(model, 0.01)
    gen = torch.Generator().manual_seed(0)

    def timed(fn, n: int) -> tuple[float, float, float]:
        for _ in range(8):  # warm-up: oneDNN primitives, the heap's first growth
            fn()
        faults, seconds = [], 0.0
        for _ in range(n):
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            fn()
            seconds += time.perf_counter() - t0
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        return statistics.mean(faults), statistics.median(faults), seconds / n

    out = {}
    for b in batches:
        x, y = torch.randn(b, 3, 32, 32, generator=gen), torch.randint(0, 10, (b,), generator=gen)

        def step(x=x, y=y) -> None:
            loss = F.cross_entropy(training.forward(model, x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[str(b)] = timed(step, steps)
    images = torch.randn(3000, 3, 32, 32, generator=gen)
    folded = training.inference_model(model)

    @torch.inference_mode()
    def evaluation() -> None:
        for s in range(0, len(images), 1024):
            training.forward(folded, images[s:s + 1024])

    out["eval"] = timed(evaluation, max(2, steps // 4))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="smallresnet", help="model registry name (the demo's by default)")
    p.add_argument("--batches", default="64,128,256", help="training batch sizes (the searched ones)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per batch size and repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--as-mode", dest="mode", choices=("default", "held"), help=argparse.SUPPRESS)
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.mode:
        print(json.dumps(measure(args.arch, batches, args.steps, args.mode == "held")))
        return

    from deepunlearn.training import matmul_gflops

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    best: dict[str, dict[str, tuple[float, float, float]]] = {"default": {}, "held": {}}
    for _ in range(args.repeats):
        for mode in ("default", "held"):
            cmd = [sys.executable, __file__, "--arch", args.arch, "--batches", args.batches, "--steps",
                   str(args.steps), "--as-mode", mode]
            run = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
            for k, (mean, median, seconds) in run.items():
                if k not in best[mode] or seconds < best[mode][k][2]:
                    best[mode][k] = (mean, median, seconds)
    print(f"held-memory: {args.arch}, 1 thread, fp32 matmul {matmul_gflops(seconds=0.5):.0f} GFLOP/s (2 threads); "
          f"best of {args.repeats}, modes alternating")
    print(f"{'':12s} {'faults default':>15s} {'faults held':>12s} {'median default':>15s} {'median held':>12s} "
          f"{'ms default':>11s} {'ms held':>8s} {'ratio':>6s}")
    for k in best["default"]:
        (fd, md, sd), (fh, mh, sh) = best["default"][k], best["held"][k]
        what = "eval pass" if k == "eval" else f"step b{k}"
        print(f"{what:12s} {fd:15.0f} {fh:12.0f} {md:15.0f} {mh:12.0f} {sd * 1e3:11.1f} {sh * 1e3:8.1f} {sd / sh:5.2f}x")


if __name__ == "__main__":
    main()
