"""NG+: NegGrad+, descent on the retain set and ascent on the forget set together (spec D.5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.models import eval_for_training
from deepunlearn.training import forward, iterate_forever, sgd


@dataclass
class NGPlusParams:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    alpha: float = 0.95  # weight of the retain CE; 1 − alpha weighs the (negated) forget CE


NGPLUS_DOMAINS = {**space.STD_DOMAINS, "alpha": space.UNIT}  # the values each field may take (checked before any work)


def ngplus_space(trial, ctx) -> dict:
    """STD + alpha in [0, 1]."""
    return {**space.std(trial, ctx), "alpha": space.unit(trial, "alpha")}


def zero_missing_grads(model: torch.nn.Module) -> None:
    """Give every trainable parameter left without a gradient a zero one, so weight decay and momentum act on it."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


def pair_logits(model: torch.nn.Module, x_r: torch.Tensor, x_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of a retain and a forget batch from one forward over both (an eval-mode model).

    Eval mode has no batch statistics, so each sample's logits are those of the reference's two
    forwards, up to float rounding, from fewer and larger products.
    """
    logits = forward(model, torch.cat([x_r, x_f]))
    return logits[:len(x_r)], logits[len(x_r):]


@register_method("ngplus", display="NG+", hparams=NGPlusParams, space=ngplus_space, domains=NGPLUS_DOMAINS,
                 paper="Kurmanji et al. 2023 (NegGrad+, from the SCRUB paper)",
                 idea="minimise alpha·CE on retain batches minus (1 − alpha)·CE on forget batches, in eval mode")
def neggrad_plus(model, data, hp: NGPlusParams):
    """Per retain batch (one pass) paired with a cycled forget batch: SGD on α·CE_r − (1 − α)·CE_f.

    The reference's L2 pull towards θ_O has λ = 0 (never searched), so the term is left out; but it gives
    every parameter a (zero) gradient, which `zero_missing_grads` keeps (TinyViT's attention biases).
    """
    # the reference trains in eval mode: BatchNorm uses, and keeps, the Original's running statistics
    eval_for_training(model)
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    g = rng(data)
    for _ in range(hp.epochs):
        # the reference zips retain with itertools.cycle(forget loader): one shuffle per epoch, replayed
        order = data.indices("forget")[torch.randperm(data.size("forget"), device=data.device, generator=g)]
        forget = iterate_forever(lambda order=order: data.batches(order, hp.batch_size))
        for x_r, y_r in data.batches("retain", hp.batch_size, shuffle=True, generator=g):
            x_f, y_f = next(forget)
            logits_r, logits_f = pair_logits(model, x_r, x_f)
            loss = hp.alpha * F.cross_entropy(logits_r, y_r) - (1 - hp.alpha) * F.cross_entropy(logits_f, y_f)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # as the reference's 0·‖θ − θ_O‖²: parameters the loss does not reach (TinyViT's eval-mode
            # attention biases) still decay and carry momentum, where SGD would skip a None gradient
            zero_missing_grads(model)
            opt.step()
    return model
