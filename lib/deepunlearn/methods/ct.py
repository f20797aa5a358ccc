"""CT: transpose every convolution kernel spatially, then fine-tune on retain (spec D.17, Kaggle 5th)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepunlearn.methods import space
from deepunlearn.methods.base import register_method
from deepunlearn.methods.ft import finetune


@dataclass
class CTParams:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4


CT_DOMAINS = space.STD_DOMAINS  # the values each field may take (checked before any work)


def ct_space(trial, ctx) -> dict:
    """STD only."""
    return space.std(trial, ctx)


@torch.no_grad()
def transpose_convs(model: nn.Module) -> None:
    """Replace every Conv2d kernel W[o, i, h, w] by W[o, i, w, h] (1×1 kernels are unchanged)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            t = w.transpose(2, 3).clone()
            if t.shape == w.shape:
                # square kernels (all of them in both archs): copy in place, keeping the memory layout
                w.copy_(t)
            else:
                m.weight = nn.Parameter(t.contiguous())


@register_method("ct", display="CT", hparams=CTParams, space=ct_space, domains=CT_DOMAINS,
                 paper="NeurIPS 2023 Machine Unlearning Challenge, 5th place (kgltop5); "
                       "Triantafillou et al. 2024",
                 idea="transpose every convolution kernel spatially, then fine-tune on the retain set")
def conv_transpose(model, data, hp: CTParams):
    """Transpose the conv kernels, then E epochs of SGD + CE on D_r, cosine per epoch (T_max = E)."""
    transpose_convs(model)
    return finetune(model, data, hp)  # CT's second step is exactly FT (spec D.17)
