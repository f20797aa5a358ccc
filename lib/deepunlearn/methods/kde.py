"""KDE: reset the stem and classifier, distil the Original on val, then on retain (spec D.18, Kaggle 6th)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.methods import space
from deepunlearn.methods.base import frozen_logits, register_method, rng
from deepunlearn.models import classifier
from deepunlearn.training import forward, sgd


@dataclass
class KDEParams:
    epochs: int = 3  # warm-up epochs of distillation on the validation split
    batch_size: int = 64
    lr: float = 9e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    retain_epochs: int = 3  # epochs of distillation + CE on the retain split
    retain_lr: float = 1e-3
    retain_momentum: float = 0.9
    retain_weight_decay: float = 5e-4
    temperature: float = 5.0  # τ of the softened teacher / student distributions


# the values each field may take (checked before any work)
KDE_DOMAINS = {**space.STD_DOMAINS, "epochs": space.COUNT0, "retain_epochs": space.COUNT0,
               "temperature": space.POSITIVE, "retain_lr": space.POSITIVE,
               "retain_momentum": space.MOMENTUM_DOMAIN, "retain_weight_decay": space.NONNEG}


def kde_space(trial, ctx) -> dict:
    """τ on [0, 5], retain epochs and retain optimiser, + STD for the warm-up."""
    return {"temperature": space.temperature(trial),
            "retain_epochs": space.epochs(trial, ctx, "retain_epochs"),
            "retain_lr": space.log_uniform(trial, "retain_lr"), "retain_momentum": space.MOMENTUM,
            "retain_weight_decay": space.log_uniform(trial, "retain_weight_decay"), **space.std(trial, ctx)}


def reset_stem_and_classifier(model: nn.Module) -> None:
    """PyTorch default reset of a top-level `conv1` (ResNet only) and of the final Linear."""
    if isinstance(getattr(model, "conv1", None), nn.Conv2d):
        model.conv1.reset_parameters()
    classifier(model).reset_parameters()


def kl_soft(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(softmax(T/τ) ‖ softmax(S/τ)), batch mean, no τ² factor."""
    return F.kl_div(F.log_softmax(student / tau, 1), F.log_softmax(teacher / tau, 1), reduction="batchmean",
                    log_target=True)


def retain_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft CE to the teacher + CE to the labels + KL to the teacher (all at τ, as the reference)."""
    p_t = F.softmax(teacher / tau, 1)
    soft_ce = -(p_t * F.log_softmax(student / tau, 1)).sum(1).mean()
    return soft_ce + F.cross_entropy(student, y) + kl_soft(student, teacher, tau)


def distill_epoch(model: nn.Module, teacher: torch.Tensor, opt: torch.optim.Optimizer,
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                  loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """One pass in train mode over (x, y, idx) batches: loss_fn(student logits, teacher[idx], y), SGD step."""
    model.train()
    for x, y, idx in batches:
        loss = loss_fn(forward(model, x), teacher[idx], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@register_method("kde", display="KDE", hparams=KDEParams, space=kde_space, domains=KDE_DOMAINS,
                 paper="NeurIPS 2023 Machine Unlearning Challenge, 6th place (kgltop6, team Euclid / DUTH); "
                       "Triantafillou et al. 2024",
                 idea="reset the stem conv and classifier, distil the Original on the validation split, then "
                      "distil + CE on the retain split")
def reset_and_distill(model, data, hp: KDEParams):
    """Reset conv1 + classifier; E warm-up epochs of KL_τ on D_v; retain epochs of CE + 2·KL_τ on D_r."""
    teacher = frozen_logits(copy.deepcopy(model).eval(), data, ["val", "retain"], "original")
    reset_stem_and_classifier(model)
    tau = hp.temperature
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    for _ in range(hp.epochs):
        # the reference warms up on held-out validation data, in order (spec I.11)
        distill_epoch(model, teacher, opt, data.batches("val", hp.batch_size, with_index=True),
                      lambda s, t, y: kl_soft(s, t, tau))
    opt = sgd(model, hp.retain_lr, hp.retain_momentum, hp.retain_weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.retain_epochs)
    g = rng(data)
    for _ in range(hp.retain_epochs):
        distill_epoch(model, teacher, opt, data.batches("retain", hp.batch_size, shuffle=True, generator=g,
                                                                  with_index=True),
                      lambda s, t, y: retain_loss(s, t, y, tau))
        sched.step()
    return model
