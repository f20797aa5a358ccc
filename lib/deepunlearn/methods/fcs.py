"""FCS: Kaggle 2023 unlearning competition, 1st place (spec D.13)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepunlearn.methods import space
from deepunlearn.methods.base import register_method, rng
from deepunlearn.training import forward, iterate_forever, sgd


@dataclass
class FCSParams:
    epochs: int = 8
    batch_size: int = 256
    lr: float = 0.005  # stage 1 ("optimizer"): push forget outputs towards uniform
    momentum: float = 0.9
    weight_decay: float = 0.0
    retain_lr: float = 0.001  # per 64 samples: scaled by batch_size / 64
    retain_momentum: float = 0.9
    retain_weight_decay: float = 1e-2
    forget_lr: float = 3e-4  # forget round, cosine-annealed per iteration down to eta_min
    forget_momentum: float = 0.9
    forget_weight_decay: float = 0.0
    eta_min: float = 1e-6
    temperature: float = 1.15  # τ of the forget/retain logit similarity


# the values each field may take (checked before any work)
FCS_DOMAINS = {**space.STD_DOMAINS, "epochs": space.COUNT0, "retain_lr": space.POSITIVE,
               "retain_momentum": space.MOMENTUM_DOMAIN, "retain_weight_decay": space.NONNEG,
               "forget_lr": space.POSITIVE, "forget_momentum": space.MOMENTUM_DOMAIN,
               "forget_weight_decay": space.NONNEG, "temperature": space.POSITIVE, "eta_min": space.NONNEG}


def fcs_space(trial, ctx) -> dict:
    """STD (stage-1 optimiser, batch size, E) + retain and forget optimisers, τ and eta_min."""
    return {**space.std(trial, ctx),
            "retain_lr": space.log_uniform(trial, "retain_lr"), "retain_momentum": space.MOMENTUM,
            "retain_weight_decay": space.log_uniform(trial, "retain_weight_decay"),
            "forget_lr": space.log_uniform(trial, "forget_lr"), "forget_momentum": space.MOMENTUM,
            "forget_weight_decay": space.log_uniform(trial, "forget_weight_decay"),
            "temperature": space.temperature(trial),
            "eta_min": space.log_uniform(trial, "eta_min", 1e-6, 1e-1)}


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform ‖ softmax(logits)), batchmean: zero exactly when every output is uniform."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[1])
    return F.kl_div(logits.log_softmax(1), uniform, reduction="batchmean")


def contrast_loss(z_f: torch.Tensor, z_r: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over (i, j) of −log_softmax_j(z_f,i · z_r,j / τ): forget logits equally similar to every retain one."""
    sim = z_f @ z_r.T / temperature
    return -sim.log_softmax(1).mean()


@register_method("fcs", display="FCS", hparams=FCSParams, space=fcs_space, domains=FCS_DOMAINS,
                 paper="NeurIPS 2023 Machine Unlearning competition, 1st place (Triantafillou et al. 2024)",
                 idea="forget outputs to uniform, then alternate a forget/retain contrast round and retain fine-tuning")
def fcs(model, data, hp: FCSParams):
    """Stage 1: one KL-to-uniform pass on D_f; stage 2: E × (contrast round on D_f, CE round on D_r)."""
    # three optimisers on the same parameters, each with its own momentum buffers (reference)
    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    retain_opt = sgd(model, hp.retain_lr * hp.batch_size / 64, hp.retain_momentum, hp.retain_weight_decay)
    forget_opt = sgd(model, hp.forget_lr, hp.forget_momentum, hp.forget_weight_decay)
    steps = data.num_batches("forget", hp.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(forget_opt, T_max=max(hp.epochs * steps, 1),
                                                       eta_min=hp.eta_min)
    g = rng(data)
    model.train()
    for x, _ in data.batches("forget", hp.batch_size, shuffle=True, generator=g):
        loss = uniform_kl(forward(model, x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(hp.epochs):
        retain = iterate_forever(lambda: data.batches("retain", hp.batch_size, shuffle=True, generator=g))
        for (x_f, _), (x_r, _) in zip(data.batches("forget", hp.batch_size, shuffle=True, generator=g), retain):
            z_f = forward(model, x_f)
            with torch.no_grad():
                z_r = forward(model, x_r)  # in train mode: BN statistics see the retain batch too
            loss = contrast_loss(z_f, z_r, hp.temperature)
            forget_opt.zero_grad(set_to_none=True)
            loss.backward()
            forget_opt.step()
            sched.step()
        for x, y in data.batches("retain", hp.batch_size, shuffle=True, generator=g):
            loss = F.cross_entropy(forward(model, x), y)
            retain_opt.zero_grad(set_to_none=True)
            loss.backward()
            retain_opt.step()
    return model
