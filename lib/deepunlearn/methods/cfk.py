"""CF-k: Catastrophic Forgetting, fine-tune only the last k blocks and the classifier (spec D.11)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.models import blocks, classifier, eval_for_training
from deepunlearn.training import forward, sgd


@dataclass
class CFKParams:
    epochs: int = 10
    batch_size: int = 256
    num_blocks: int = 1  # k: the last k blocks (all of them when k ≥ #blocks) plus the classifier
    lr: float = 0.01
    sgda_decay_rate: float = 0.1  # lr factor applied at 50%, 80% and 90% of the epochs
    sgda_weight_decay: float = 0.1  # weight of the L2 pull towards the starting weights θ₀


# the values each field may take (checked before any work)
CFK_DOMAINS = {**space.STD_DOMAINS, "sgda_decay_rate": space.UNIT, "sgda_weight_decay": space.NONNEG,
               "num_blocks": space.COUNT}


def cfk_space(trial, ctx) -> dict:
    """Epochs, batch size, lr, decay rate, L2 weight and k (sgda_learning_rate and momentum are dead)."""
    return {"epochs": space.epochs(trial, ctx), "batch_size": space.batch_size(trial, ctx),
            "sgda_decay_rate": space.unit(trial, "sgda_decay_rate"),
            "sgda_weight_decay": space.log_uniform(trial, "sgda_weight_decay"),
            "lr": space.log_uniform(trial, "lr"),
            "num_blocks": trial.suggest_int("num_blocks", 1, 10)}


def last_k(model: nn.Module, k: int) -> list[nn.Module]:
    """The last k blocks (all blocks when k ≥ their number) and the classifier: the trainable part."""
    bl = blocks(model)
    return bl[len(bl) - min(k, len(bl)):] + [classifier(model)]


def decayed_lr(lr: float, decay_rate: float, epoch: int, epochs: int) -> float:
    """lr × decay^#{d : epoch > d}, with d ∈ {⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋} (0-based epoch)."""
    steps = sum(epoch > d for d in (int(0.5 * epochs), int(0.8 * epochs), int(0.9 * epochs)))
    return lr * decay_rate ** steps


def finetune_last_k(model: nn.Module, data: DeviceData, hp: CFKParams, parts: list[nn.Module],
                    augment: bool = False) -> nn.Module:
    """Train only `parts` on D_r with CE + (λ/2)‖θ − θ₀‖², model in eval mode (frozen BN statistics).

    θ₀ is the state of `parts` on entry. SGD has momentum 0 and weight decay 0, as the reference.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for part in parts for p in part.parameters()]
    trainable = list({id(p): p for p in trainable}.values())  # a parameter shared by two parts once
    for p in trainable:
        p.requires_grad_(True)
    theta0 = [p.detach().clone() for p in trainable]
    opt = sgd(trainable, hp.lr, momentum=0.0, weight_decay=0.0)
    g = rng(data)
    eval_for_training(model)  # frozen BN statistics; TinyViT's attention biases constant, as the reference
    for epoch in range(hp.epochs):
        for group in opt.param_groups:
            group["lr"] = decayed_lr(hp.lr, hp.sgda_decay_rate, epoch, hp.epochs)
        for x, y in data.batches("retain", hp.batch_size, shuffle=True, augment=augment, generator=g):
            l2 = sum((p - p0).pow(2).sum() for p, p0 in zip(trainable, theta0))
            loss = F.cross_entropy(forward(model, x), y) + hp.sgda_weight_decay / 2 * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in model.parameters():  # hand back a plain module: every parameter trainable again
        p.requires_grad_(True)
    # train(): the mode it came in; also frees TinyViT's eval-mode bias cache, which holds a graph
    # (a module holding it cannot be deep-copied)
    return model.train()


@register_method("cfk", display="CF-k", hparams=CFKParams, space=cfk_space, domains=CFK_DOMAINS,
                 paper="Goel et al. 2022 (Towards Adversarial Evaluation of Machine Unlearning)",
                 idea="fine-tune only the last k blocks and the classifier on the retain set, the rest frozen")
def catastrophic_forgetting_k(model, data, hp: CFKParams):
    """Freeze all but the last k blocks + classifier, then fine-tune them on D_r in eval mode."""
    return finetune_last_k(model, data, hp, last_k(model, hp.num_blocks))
