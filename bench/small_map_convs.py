"""Forward + backward time of ResNet-18's small-map convolutions at 32 px: nn.Conv2d vs SmallMapConv2d.

One row per convolution shape that SmallMapConv2d turns dense (input map smaller than the kernel),
timed in the same run with the same weights and inputs; prints milliseconds of forward and of
backward for both, and their ratio (conv / dense).

    python bench/small_map_convs.py [--batch-size 256] [--reps 10]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from deepunlearn.kernels import use_small_map_convs

# (in, out, stride, input h=w): layer3's 3×3 convs on 2×2, layer4's first on 2×2 (stride 2), the rest on 1×1
SHAPES = [(256, 256, 1, 2), (256, 512, 2, 2), (512, 512, 1, 1)]


def time_conv(conv: nn.Module, x: torch.Tensor, reps: int) -> tuple[float, float]:
    """Best-of-`reps` milliseconds of forward and of backward (weight and input gradients)."""
    fwd = bwd = float("inf")
    for _ in range(reps + 1):  # the first round warms up oneDNN's primitive cache
        xi = x.detach().requires_grad_()
        t0 = time.perf_counter()
        y = conv(xi)
        t1 = time.perf_counter()
        y.backward(torch.ones_like(y))
        t2 = time.perf_counter()
        conv.zero_grad(set_to_none=True)
        fwd, bwd = min(fwd, (t1 - t0) * 1e3), min(bwd, (t2 - t1) * 1e3)
    return fwd, bwd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"{'conv (in→out, stride, map)':30s} {'conv fwd':>9s} {'conv bwd':>9s} {'dense fwd':>9s} "
          f"{'dense bwd':>9s} {'fwd+bwd ratio':>13s}")
    for cin, cout, stride, hw in SHAPES:
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        dense = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        dense.load_state_dict(conv.state_dict())
        use_small_map_convs(dense)
        x = torch.randn(args.batch_size, cin, hw, hw)
        cf, cb = time_conv(conv, x, args.reps)
        df, db = time_conv(dense, x, args.reps)
        name = f"{cin}→{cout}, s{stride}, {hw}×{hw}"
        print(f"{name:30s} {cf:8.2f}ms {cb:8.2f}ms {df:8.2f}ms {db:8.2f}ms {(cf + cb) / (df + db):12.2f}×")


if __name__ == "__main__":
    main()
