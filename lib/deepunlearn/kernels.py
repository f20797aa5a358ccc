"""Faster CPU execution of the same models: convolutions over tiny feature maps as one matrix product.

At 32×32 input, ResNet-18's layer3 sees 2×2 maps and layer4 1×1 maps. A 3×3 convolution with
padding 1 there mostly multiplies padding zeros, and oneDNN's backward does all of that work
(its backward took 3–4× its forward on layer4's 1×1 maps). Written as the dense linear map it is,
from (C, H, W) inputs to (O, Ho, Wo) outputs, the same convolution costs C·H·W·O·Ho·Wo
multiply-adds instead of C·O·k²·Ho·Wo: fewer whenever H·W < k². `bench/small_map_convs.py` times
both per shape (on a 2-core CPU, forward + backward: 1.5× faster on 2×2 maps, 2.6–4.3× on 1×1). Parameters,
state_dict and gradients are the convolution's own (the unused taps get an exact zero gradient,
as they do in the convolution); outputs agree up to float rounding.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.lru_cache(maxsize=64)
def _tap_table(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, int, int]:
    """One-hot T[out_pos, in_pos, tap]: which kernel tap joins an input pixel to an output pixel."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = in_hw, kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    ones = [(i * wo + j, r * w + c, (r - i * sh + ph) * kw + (c - j * sw + pw))
            for i in range(ho) for j in range(wo) for r in range(h) for c in range(w)
            if 0 <= r - i * sh + ph < kh and 0 <= c - j * sw + pw < kw]
    # the table is cached, and its first user may be an evaluation under inference_mode: it must
    # still be a normal tensor, usable in training
    with torch.inference_mode(False):
        table = torch.zeros(ho * wo, h * w, kh * kw)
        table[tuple(torch.tensor(ones).T)] = 1.0
        return table.to(device), ho, wo


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d that, on CPU, runs as one dense matrix product when its input map is smaller than its kernel."""

    def _dense_ok(self, x: torch.Tensor) -> bool:
        h, w = x.shape[-2:]
        return (x.device.type == "cpu" and h * w < self.kernel_size[0] * self.kernel_size[1]
                and self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and x.dim() == 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._dense_ok(x):
            return super().forward(x)
        h, w = x.shape[-2:]
        table, ho, wo = _tap_table((h, w), self.kernel_size, self.stride, self.padding, x.device)
        o, c = self.weight.shape[:2]
        # M[o, out_pos, c, in_pos] = weight[o, c, tap(out_pos, in_pos)]; a matmul, so backward is one too
        dense = torch.einsum("ock,pqk->opcq", self.weight.flatten(2), table).reshape(o * ho * wo, c * h * w)
        y = F.linear(x.flatten(1), dense).view(-1, o, ho, wo)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def use_small_map_convs(model: nn.Module) -> nn.Module:
    """Switch every plain nn.Conv2d of `model` to SmallMapConv2d in place (same parameters); returns `model`."""
    for m in model.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = SmallMapConv2d
    return model
