"""GA: gradient ascent on the forget set (spec D.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.training import sgd, train_epoch


@dataclass
class GAParams:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4


GA_DOMAINS = space.STD_DOMAINS  # the values each field may take (checked before any work)


def ga_space(trial, ctx) -> dict:
    """STD only."""
    return space.std(trial, ctx)


def negative_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−CE: minimising it ascends the forget-set loss."""
    return -F.cross_entropy(logits, y)


@register_method("ga", display="GA", hparams=GAParams, space=ga_space, domains=GA_DOMAINS,
                 paper="Thudi et al. 2022; Graves et al. 2021 (via Jia et al. 2023, Unlearn-Sparse)",
                 idea="gradient ascent on the cross-entropy of the forget set; the retain set is not used")
def gradient_ascent(model, data, hp: GAParams):
    """E shuffled passes over D_f in train mode minimising −CE with SGD; no scheduler."""
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    g = rng(data)
    for _ in range(hp.epochs):
        train_epoch(model, opt, data.batches("forget", hp.batch_size, shuffle=True, generator=g), loss_fn=negative_ce)
    return model
