"""CFW: confuse the stem, fine-tune with balanced class weights, weaken again (spec D.15, Kaggle 3rd)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.training import sgd, train_epoch


@dataclass
class CFWParams:
    epochs: int = 4
    batch_size: int = 64
    lr: float = 7e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    start_confuser_std: float = 0.6  # std of the Gaussian noise added to the stem before fine-tuning
    final_confuser_std: float = 0.005  # std of the noise added again after the penultimate epoch


# the values each field may take (checked before any work)
CFW_DOMAINS = {**space.STD_DOMAINS, "start_confuser_std": space.NONNEG, "final_confuser_std": space.NONNEG}


def cfw_space(trial, ctx) -> dict:
    """The two confuser stds, uniform on [0, 1], + STD."""
    return {"start_confuser_std": space.unit(trial, "start_confuser_std"),
            "final_confuser_std": space.unit(trial, "final_confuser_std"), **space.std(trial, ctx)}


@torch.no_grad()
def confuse(model: nn.Module, std: float) -> list[str]:
    """w ← N(w, std²) on top-level children named "*conv*" with a weight; returns the names hit.

    Faithful to the reference: on ResNet this is `conv1` only, on timm TinyViT nothing matches.
    """
    hit = []
    for name, child in model.named_children():
        if "conv" in name and isinstance(getattr(child, "weight", None), torch.Tensor):
            child.weight.add_(torch.randn_like(child.weight) * std)
            hit.append(name)
    return hit


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced" weights n / (C · n_c), C = classes present; absent classes get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    present = counts > 0
    w = labels.numel() / (present.sum() * counts.clamp(min=1))
    return torch.where(present, w, torch.zeros_like(w))


def class_weighted_ce(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Batch-mean CE scaled by the batch's mean class weight (not a per-sample weighted CE)."""
    return F.cross_entropy(logits, y) * weights[y].mean()


@register_method("cfw", display="CFW", hparams=CFWParams, space=cfw_space, domains=CFW_DOMAINS,
                 paper="NeurIPS 2023 Machine Unlearning Challenge, 3rd place (kgltop3); "
                       "Triantafillou et al. 2024",
                 idea="add Gaussian noise to the stem conv, fine-tune on retain with balanced class weights, "
                      "add small noise again before the last epoch")
def confuse_finetune_weaken(model, data, hp: CFWParams):
    """Confuse (start std); E epochs of class-weighted SGD + cosine on D_r; confuse (final std) at E−2."""
    confuse(model, hp.start_confuser_std)
    # the reference collects D_r labels with a forward pass over it; reading them directly is equivalent
    weights = balanced_class_weights(data.labels[data.indices("retain")], data.num_classes)
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.epochs)
    g = rng(data)
    for epoch in range(hp.epochs):
        train_epoch(model, opt, data.batches("retain", hp.batch_size, shuffle=True, generator=g),
                    loss_fn=lambda logits, y: class_weighted_ce(logits, y, weights))
        sched.step()
        if epoch == hp.epochs - 2:
            confuse(model, hp.final_confuser_std)
    return model
