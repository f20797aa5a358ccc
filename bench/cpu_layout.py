"""Memory layout on CPU: NCHW against channels_last for a training step and an evaluation pass, per model.

`training.to_device` puts a model channels_last on CPU only when it declares `cpu_channels_last`
(the narrow ResNets); this prints the measurement behind that choice. Same weights, same inputs, same
process; each layout is timed alternately, best of `--repeats`, on `--threads` threads.

    python bench/cpu_layout.py [--archs smallresnet,tinycnn,resnet18] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from deepunlearn.kernels import use_small_map_convs
from deepunlearn.models import create_model
from deepunlearn.training import matmul_gflops, sgd


def _model(arch: str, channels_last: bool) -> torch.nn.Module:
    model = use_small_map_convs(create_model(arch, 10, seed=0))
    return model.to(memory_format=torch.channels_last) if channels_last else model


def step_seconds(arch: str, channels_last: bool, batch: int, steps: int) -> float:
    """Seconds per SGD step (forward, backward, update) at `batch` images of 32x32."""
    model = _model(arch, channels_last)
    opt = sgd(model, 0.01)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: oneDNN primitive creation
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


@torch.inference_mode()
def eval_seconds(arch: str, channels_last: bool, images: int) -> float:
    """Seconds of one eval-mode pass over `images` images in batches of 1024 (as training.predict)."""
    model = _model(arch, channels_last).eval()
    x = torch.randn(images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model(x[:8].contiguous(memory_format=fmt))
    t0 = time.perf_counter()
    for s in range(0, images, 1024):
        model(x[s:s + 1024].contiguous(memory_format=fmt))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="smallresnet,tinycnn,resnet18")
    p.add_argument("--batch", type=int, default=64, help="training batch (the methods' smallest searched batch)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--images", type=int, default=4096, help="images per evaluation pass")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a sweep worker runs 1)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu-layout: {args.threads} thread(s), fp32 matmul {matmul_gflops(seconds=0.5):.0f} GFLOP/s; "
          f"best of {args.repeats}, layouts alternating")
    print(f"{'arch':12s} {'step NCHW':>10s} {'step CL':>9s} {'ratio':>6s}   {'eval NCHW':>10s} {'eval CL':>9s} {'ratio':>6s}"
          "   chosen on CPU")
    for arch in args.archs.split(","):
        step = {cl: float("inf") for cl in (False, True)}
        ev = dict(step)
        for _ in range(args.repeats):
            for cl in (False, True):
                step[cl] = min(step[cl], step_seconds(arch, cl, args.batch, args.steps))
                ev[cl] = min(ev[cl], eval_seconds(arch, cl, args.images))
        chosen = "channels_last" if getattr(create_model(arch, 10), "cpu_channels_last", False) else "NCHW"
        print(f"{arch:12s} {step[False] * 1e3:8.1f}ms {step[True] * 1e3:7.1f}ms {step[False] / step[True]:5.2f}x"
              f"   {ev[False]:9.3f}s {ev[True]:8.3f}s {ev[False] / ev[True]:5.2f}x   {chosen}")


if __name__ == "__main__":
    main()
