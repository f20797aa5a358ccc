"""SRL: successive random labels, i.e. random relabeling of the forget set (spec D.4).

`relabel_epoch` is the shared routine SalUn (salun.py) runs with a gradient mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.training import sgd, train_epoch


@dataclass
class SRLParams:
    epochs: int = 5
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4


SRL_DOMAINS = space.STD_DOMAINS  # the values each field may take (checked before any work)


def srl_space(trial, ctx) -> dict:
    """STD only."""
    return space.std(trial, ctx)


def relabeled_batches(data: DeviceData, batch_size: int, generator: torch.Generator, label_seed: int
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shuffled pass over D_f ∪ D_r yielding (x, y, idx); forget samples get uniform random labels.

    As in the reference, the label stream restarts from `label_seed` every call (a fresh numpy RNG per
    epoch) and is consumed in access order, so each epoch draws the same label sequence but it lands
    on different forget samples because the shuffle differs. A random label may equal the true one.
    """
    forget = data.indices("forget")
    is_forget = torch.zeros(data.labels.numel(), dtype=torch.bool, device=data.device)
    is_forget[forget] = True
    draws = np.random.default_rng(label_seed).integers(0, data.num_classes, forget.numel())
    labels = torch.as_tensor(draws, dtype=torch.int64, device=data.device)
    used = 0
    for x, y, idx in data.batches(["forget", "retain"], batch_size, shuffle=True, generator=generator,
                                  with_index=True):
        f = is_forget[idx]
        k = int(f.sum())
        y = y.clone()
        y[f] = labels[used:used + k]
        used += k
        yield x, y, idx


def relabel_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: DeviceData, batch_size: int,
                  generator: torch.Generator, after_backward: Callable[[], None] | None = None) -> dict[str, float]:
    """One SRL epoch: CE on the shuffled D_f (random labels) ∪ D_r (true labels) in train mode."""
    batches = relabeled_batches(data, batch_size, generator, label_seed=torch.initial_seed())
    return train_epoch(model, opt, batches, after_backward=after_backward)


@register_method("srl", display="SRL", hparams=SRLParams, space=srl_space, domains=SRL_DOMAINS,
                 paper="Graves et al. 2021 (Amnesiac ML), via the SalUn code's RL (Fan et al. 2024)",
                 idea="train on the retain set plus the forget set with uniformly random labels, redrawn every epoch")
def successive_random_labels(model, data, hp: SRLParams):
    """E epochs of SGD on D_f (random labels) ∪ D_r; no scheduler (the reference ignores it)."""
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    g = rng(data)
    for _ in range(hp.epochs):
        relabel_epoch(model, opt, data, hp.batch_size, g)
    return model
