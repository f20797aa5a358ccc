"""PRMQ: prune, re-initialise, retrain matching the Original's entropy, quantise (spec D.16, Kaggle 4th)."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.methods import space
from deepunlearn.methods.base import frozen_logits, register_method, rng
from deepunlearn.training import forward, iterate_forever, sgd


@dataclass
class PRMQParams:
    epochs: float = 3.2  # a float: the loop runs int(batches per epoch × epochs) + 1 steps
    batch_size: int = 64
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    prune_amount: float = 0.99  # fraction of all conv / linear weights and biases set to zero


# the values each field may take (checked before any work)
PRMQ_DOMAINS = {**space.STD_DOMAINS, "epochs": space.POSITIVE, "prune_amount": space.UNIT}


def prmq_space(trial, ctx) -> dict:
    """`prune_amount` uniform on [0, 1] + STD, with epochs a float on [1, E_max]."""
    return {"prune_amount": space.unit(trial, "prune_amount"),
            "lr": space.log_uniform(trial, "lr"), "momentum": space.MOMENTUM,
            "weight_decay": space.log_uniform(trial, "weight_decay"),
            "batch_size": space.batch_size(trial, ctx),
            "epochs": trial.suggest_float("epochs", 1, ctx.e_max)}


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight" | "bias") of every Conv2d and Linear tensor that exists."""
    return [(m, name) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            for name in ("weight", "bias") if getattr(m, name) is not None]


@torch.no_grad()
def global_l1_prune(model: nn.Module, amount: float) -> int:
    """Zero the round(amount · N) smallest-|w| entries over all conv / linear tensors (one threshold).

    Same selection as torch.nn.utils.prune.global_unstructured(L1Unstructured) made permanent, but the
    module keeps plain parameters (and its state_dict keys). Returns the number of entries pruned.
    """
    tensors = [getattr(m, name) for m, name in prunable(model)]
    scores = torch.cat([t.detach().abs().flatten() for t in tensors])
    k = round(amount * scores.numel())
    if k == 0:
        return 0
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[torch.topk(scores, k, largest=False).indices] = True
    start = 0
    for t in tensors:
        n = t.numel()
        # view_as keeps channels_last parameters correct: the mask was built from their logical order
        t.masked_fill_(mask[start:start + n].view(t.shape), 0.0)
        start += n
    return k


@torch.no_grad()
def reinit_zeros(model: nn.Module) -> None:
    """Redraw exactly-zero conv / linear weights from U(±1/√fan_in) (fan_in per group); biases stay 0."""
    for m, name in prunable(model):
        if name != "weight":
            continue
        w = m.weight
        bound = 1.0 / math.sqrt(w[0].numel())  # c_in/groups · k_h · k_w, or in_features
        fresh = torch.empty_like(w).uniform_(-bound, bound)
        w.copy_(torch.where(w == 0, fresh, w))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of softmax(logits)."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


@register_method("prmq", display="PRMQ", hparams=PRMQParams, space=prmq_space, domains=PRMQ_DOMAINS,
                 paper="NeurIPS 2023 Machine Unlearning Challenge, 4th place (kgltop4); "
                       "Triantafillou et al. 2024",
                 idea="globally prune most weights by magnitude, re-initialise them, retrain on retain with "
                      "weighted CE plus matching the Original's prediction entropy, quantise to fp16")
def prune_reinit_match_quantize(model, data, hp: PRMQParams):
    """Prune, re-init, max_iters + 1 SGD steps over D_r (weighted CE + entropy MSE to O), fp16 round trip."""
    teacher = frozen_logits(copy.deepcopy(model).eval(), data, ["retain"], "original")
    counts = torch.bincount(data.labels[data.indices("retain")], minlength=data.num_classes).float()
    weights = torch.where(counts > 0, counts.clamp(min=1) ** -0.1, torch.zeros_like(counts))
    global_l1_prune(model, hp.prune_amount)
    reinit_zeros(model)
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    g = rng(data)
    max_iters = int(data.num_batches("retain", hp.batch_size) * hp.epochs)
    batches = iterate_forever(lambda: data.batches("retain", hp.batch_size, shuffle=True, generator=g,
                                                   with_index=True))
    steps = max_iters + 1 if data.size("retain") else 0  # an empty D_r would make the cycle spin forever
    model.train()
    for x, y, idx in itertools.islice(batches, steps):  # the reference's loop runs one step more than max_iters
        logits = forward(model, x)
        target = entropy(teacher[idx])
        loss = F.cross_entropy(logits, y, weight=weights) + F.mse_loss(entropy(logits), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.half().float().eval()
