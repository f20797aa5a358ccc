"""FT: fine-tune on the retain set (spec D.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.training import sgd, train_epoch


@dataclass
class FTParams:
    epochs: int = 5
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4


FT_DOMAINS = space.STD_DOMAINS  # the values each field may take (checked before any work)


def ft_space(trial, ctx) -> dict:
    """STD only."""
    return space.std(trial, ctx)


@register_method("ft", display="FT", hparams=FTParams, space=ft_space, domains=FT_DOMAINS,
                 paper="Golatkar et al. 2020; Warnecke et al. 2021; Jia et al. 2023",
                 idea="fine-tune on the retain set (no augmentation) with SGD and a per-epoch cosine schedule")
def finetune(model, data, hp: FTParams):
    """E epochs of SGD on D_r in train mode, cosine per epoch (T_max = E)."""
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.epochs)
    g = rng(data)
    for _ in range(hp.epochs):
        train_epoch(model, opt, data.batches("retain", hp.batch_size, shuffle=True, generator=g))
        sched.step()
    return model
