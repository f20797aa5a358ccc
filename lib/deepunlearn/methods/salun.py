"""SalUn: saliency unlearning, random relabeling restricted to the most forget-salient weights (spec D.8)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import memo, register_method, rng
from deepunlearn.methods.srl import relabel_epoch
from deepunlearn.models import eval_for_training
from deepunlearn.training import forward, sgd


@dataclass
class SalUnParams:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.0  # the reference's default; the search fixes it at 0.9 like every method
    weight_decay: float = 0.0
    threshold: float = 0.5  # fraction of all parameter entries that stay trainable


# the values each field may take (checked before any work)
SALUN_DOMAINS = {**space.STD_DOMAINS, "threshold": space.UNIT}


def salun_space(trial, ctx) -> dict:
    """STD + threshold in [0, 1] (the reference's mask_optimizer.* draws are unused, so not searched)."""
    return {**space.std(trial, ctx), "threshold": space.unit(trial, "threshold")}


def forget_saliency(model: nn.Module, data: DeviceData, batch_size: int, generator: torch.Generator
                    ) -> list[torch.Tensor]:
    """|Σ_batches ∇(−CE)| over D_f in eval mode, one tensor per parameter.

    Gradients are zeroed between batches (the reference's zero_grad hits another model's optimiser,
    so its batch b adds the cumulative sum of batches 1..b; we fix that, as SalUn intends).
    In eval mode TinyViT's attention biases are constants (as in the reference), so their saliency is 0.
    """
    was_training = model.training
    eval_for_training(model)
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for x, y in data.batches("forget", batch_size, shuffle=True, generator=generator):
        grads = torch.autograd.grad(-F.cross_entropy(forward(model, x), y), params, allow_unused=True)
        for acc, gr in zip(total, grads):
            if gr is not None:
                acc += gr
    model.train(was_training)
    return [t.abs_() for t in total]


def saliency_order(saliency: list[torch.Tensor]) -> torch.Tensor:
    """Indices of all N parameter entries, flattened, by decreasing saliency (ties: the earlier entry first)."""
    flat = torch.cat([s.flatten() for s in saliency])
    return torch.sort(flat, descending=True, stable=True).indices


def saliency_mask(saliency: list[torch.Tensor], threshold: float, order: torch.Tensor | None = None
                  ) -> list[torch.Tensor]:
    """1 for the int(threshold · N) entries of largest saliency over all N parameter entries, else 0.

    `order` is `saliency_order(saliency)` when the caller has it already.
    """
    order = saliency_order(saliency) if order is None else order
    mask = torch.zeros(order.numel(), device=order.device)
    mask[order[:int(order.numel() * threshold)]] = 1.0
    return [m.view_as(s) for m, s in zip(mask.split([s.numel() for s in saliency]), saliency)]


@register_method("salun", display="SalUn", hparams=SalUnParams, space=salun_space, domains=SALUN_DOMAINS,
                 paper="Fan et al., ICLR 2024 (SalUn: Gradient-based Weight Saliency)",
                 idea="random relabeling (SRL) with gradients masked to the weights most salient for the forget loss")
def salun(model, data, hp: SalUnParams):
    """Build the saliency mask on D_f, then E masked SRL epochs with SGD; no scheduler."""
    g = rng(data)

    def compute() -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        saliency = forget_saliency(model, data, hp.batch_size, g)
        return saliency, saliency_order(saliency), g.get_state()

    # the saliency of the untouched Original depends on the batch size only (and the run seed's first
    # shuffle of D_f): a sweep's trials share it and its order, and go on from the generator state it left
    saliency, order, state = memo(("salun.saliency", hp.batch_size), compute)
    g.set_state(state)
    mask = saliency_mask(saliency, hp.threshold, order)
    params = list(model.parameters())

    def apply_mask() -> None:
        # momentum and weight decay still move masked-out weights when they are non-zero, as in the reference
        for p, m in zip(params, mask):
            if p.grad is not None:
                p.grad.mul_(m)

    opt = sgd(params, hp.lr, hp.momentum, hp.weight_decay)
    for _ in range(hp.epochs):
        relabel_epoch(model, opt, data, hp.batch_size, g, after_backward=apply_mask)
    return model
