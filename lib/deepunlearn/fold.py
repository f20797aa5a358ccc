"""Inference copies of a model with every BatchNorm folded into the convolution that feeds it.

In eval mode a BatchNorm is a fixed per-channel affine map, so conv → BN is one convolution with
rescaled weights and a bias: W' = W·γ/√(σ²+ε), b' = β + (b − μ)·γ/√(σ²+ε). The folded copy gives the
same logits up to float rounding and skips every BatchNorm pass (about 15% of an evaluation of the
narrow ResNets on CPU, bench/trial_cost.py). Only pairs whose data flow is known are folded: the
(convN, bnN) pairs of torchvision's ResNet modules and of ours, and a Conv2d directly followed by a
BatchNorm2d inside an nn.Sequential (torchvision's downsample, timm's ConvNorm). Anything else runs
as it is, so a model this does not know is evaluated exactly as before.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from deepunlearn.models import SmallResNet

NAMED_PAIRS = (BasicBlock, Bottleneck, ResNet, SmallResNet)  # forward runs bnN(convN(·)) for each N


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
            and bn.running_mean is not None and bn.running_var is not None
            and conv.out_channels == bn.num_features)


def bn_pairs(model: nn.Module) -> list[tuple[str, str, str]]:
    """(parent's qualified name, conv name, bn name) of each conv → BatchNorm pair of `model` whose data flow is known."""
    pairs = []
    for name, parent in model.named_modules():
        if isinstance(parent, NAMED_PAIRS):
            for i in range(1, 4):
                c, b = getattr(parent, f"conv{i}", None), getattr(parent, f"bn{i}", None)
                if c is not None and b is not None and _foldable(c, b):
                    pairs.append((name, f"conv{i}", f"bn{i}"))
        elif isinstance(parent, nn.Sequential):
            for a, b in itertools.pairwise(parent._modules):
                if _foldable(parent._modules[a], parent._modules[b]):
                    pairs.append((name, a, b))
    return pairs


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode `bn` into `conv` in place (weights and a bias); `bn` is then to be dropped."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
            torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(scale)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        # an elementwise product keeps the weight's memory format (channels_last stays channels_last)
        conv.weight = nn.Parameter(conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1))),
                                   requires_grad=False)
        conv.bias = nn.Parameter(shift + (bias - bn.running_mean) * scale, requires_grad=False)


def folded(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with its known conv → BatchNorm pairs folded; `model` itself if it has none."""
    pairs = [] if getattr(model, "_bn_folded", False) else bn_pairs(model)
    if not pairs:
        return model
    out = copy.deepcopy(model).eval()
    for name, conv, bn in pairs:  # names, so they find the copy's modules
        parent = out.get_submodule(name)
        fold_conv_bn(parent._modules[conv], parent._modules[bn])
        parent._modules[bn] = nn.Identity()
    out._bn_folded = True
    return out
