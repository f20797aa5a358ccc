"""RTE when one of its two runs shares the machine with a competing process: the raw ratio vs the speed-normalised one.

The Retrained model is trained once on a quiet machine; the same unlearning run (FT from the
Original) is then timed twice, quiet and while a process of ours keeps every core busy with matmuls.
Each run is bracketed by the speed probe the stages use (`training.matmul_gflops`), so this prints,
for both runs: seconds, probe GFLOP/s, CPU seconds, the raw RTE = T_R / T_U (all there was before the
probes) and the speed-normalised RTE = (T_R·g_R) / (T_U·g_U) (the attack stage's `rte_speed`), how far
each moved under load (1.00 = not at all), and whether the report's 20% speed-gap flag would catch the
loaded run. One run each; rerun it to see the noise.

    python bench/rte_under_load.py [--arch smallresnet] [--epochs 2] [--ft-epochs 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

from deepunlearn.data import load_device_data
from deepunlearn.methods import run_method
from deepunlearn.metrics import rte, rte_at_speed
from deepunlearn.models import create_model
from deepunlearn.training import Recipe, fit, matmul_gflops, to_device

# the competing process: as many BLAS threads as we use, multiplying forever until we end it
LOAD = ("import torch; torch.set_num_threads({threads}); a = torch.randn(512, 512); a @ a; print('ready', flush=True)\n"
        "while True: a @ a")


def timed(fn) -> tuple[float, float, float]:
    """(wall seconds, mean of the speed probes before and after, this process's CPU seconds) of one call."""
    before = matmul_gflops()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, (before + matmul_gflops()) / 2, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="smallresnet")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the Original and Retrained models")
    p.add_argument("--ft-epochs", type=int, default=1, help="epochs of the timed FT run")
    args = p.parse_args()
    data = load_device_data(args.dataset, "cpu")
    recipe = Recipe(epochs=args.epochs, batch_size=64)

    def train(splits: list[str]) -> torch.nn.Module:
        model = to_device(create_model(args.arch, data.num_classes, data.info.img_size, seed=0), "cpu")
        fit(model, data, splits, recipe, progress=False)
        return model

    original = train(["retain", "forget"])
    t_r, g_r, c_r = timed(lambda: train(["retain"]))
    hp = {"epochs": args.ft_epochs, "batch_size": 64}
    run_method("ft", original, data, hp)  # warm-up: first-call allocations are not the method's work
    t_q, g_q, c_q = timed(lambda: run_method("ft", original, data, hp))
    load = subprocess.Popen([sys.executable, "-c", LOAD.format(threads=torch.get_num_threads())],
                            stdout=subprocess.PIPE, text=True)
    try:
        load.stdout.readline()  # importing torch takes seconds: time nothing before it computes
        t_l, g_l, c_l = timed(lambda: run_method("ft", original, data, hp))
    finally:
        load.terminate()
        load.wait()

    print(f"dataset={args.dataset} arch={args.arch} threads={torch.get_num_threads()} cpus={os.cpu_count()} "
          f"R epochs={args.epochs} FT epochs={args.ft_epochs}")
    print(f"Retrained training (quiet) : {t_r:7.2f} s at {g_r:6.1f} GFLOP/s, {c_r:7.2f} CPU s")
    print(f"FT quiet                   : {t_q:7.2f} s at {g_q:6.1f} GFLOP/s, {c_q:7.2f} CPU s")
    print(f"FT under load              : {t_l:7.2f} s at {g_l:6.1f} GFLOP/s, {c_l:7.2f} CPU s")
    raw_q, raw_l = rte(t_r, t_q), rte(t_r, t_l)
    norm_q, norm_l = rte_at_speed(t_r, g_r, t_q, g_q), rte_at_speed(t_r, g_r, t_l, g_l)
    print(f"before (raw T_R/T_U)       : quiet {raw_q:7.2f}  loaded {raw_l:7.2f}  loaded/quiet {raw_l / raw_q:5.2f}")
    print(f"after (speed-normalised)   : quiet {norm_q:7.2f}  loaded {norm_l:7.2f}  loaded/quiet {norm_l / norm_q:5.2f}")
    gap = max(g_r, g_l) / min(g_r, g_l) - 1
    print(f"speed gap of the loaded RTE: {100 * gap:.0f}% ({'flagged' if gap > 0.2 else 'not flagged'} at 20%)")
    # for comparison only (not what the stages store): this process's CPU seconds ignore other processes
    print(f"CPU-time ratio (reference) : quiet {c_r / c_q:7.2f}  loaded {c_r / c_l:7.2f}  loaded/quiet "
          f"{c_q / c_l:5.2f}")


if __name__ == "__main__":
    main()
