"""BT: Bad Teacher, distillation from a competent and an incompetent teacher (spec D.6)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import frozen_logits, register_method, rng
from deepunlearn.models import create_model
from deepunlearn.training import forward, to_device


@dataclass
class BTParams:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01  # Adam
    weight_decay: float = 0.0  # Adam's (L2) weight decay
    kl_temperature: float = 1.0


# the values each field may take (checked before any work)
BT_DOMAINS = {**space.STD_DOMAINS, "kl_temperature": space.POSITIVE}


def bt_space(trial, ctx) -> dict:
    """kl_temperature in [0, 5] + STD without momentum (Adam ignores it)."""
    hp = space.std(trial, ctx)
    del hp["momentum"]
    return {**hp, "kl_temperature": space.temperature(trial, "kl_temperature")}


def incompetent_teacher(data: DeviceData) -> nn.Module:
    """A freshly initialised torchvision ResNet-18 (whatever the student's architecture), in eval mode.

    Seeded with the run seed, as the reference builds it right after setup_seed(123).
    """
    model = create_model("resnet18", data.num_classes, data.info.img_size, seed=torch.initial_seed())
    return to_device(model, data.device).eval()


def bt_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p ‖ softmax(s/τ)) averaged over batch × classes ("mean" reduction), no τ² factor."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    # elementwise kl_div then .mean() is PyTorch's "mean" reduction without its deprecation warning
    return F.kl_div(log_q, target_probs, reduction="none").mean()


def bt_targets(idx: torch.Tensor, is_forget: torch.Tensor, good: torch.Tensor, bad: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """Per sample: softmax(T_i(x)/τ) for forget samples, softmax(T_c(x)/τ) for retain samples.

    `good` and `bad` are the two teachers' logits by dataset index (`frozen_logits`, over retain and
    over forget: each teacher runs on the samples it gives targets for, once; the reference runs both
    on every batch of every epoch and keeps one row of each).
    """
    return F.softmax(torch.where(is_forget[idx, None], bad[idx], good[idx]) / temperature, dim=1)


@register_method("bt", display="BT", hparams=BTParams, space=bt_space, domains=BT_DOMAINS,
                 paper="Chundawat et al., AAAI 2023 (Can Bad Teaching Induce Forgetting?)",
                 idea="distil the Original on retain samples and a random network on forget samples into the student")
def bad_teacher(model, data, hp: BTParams):
    """E shuffled passes over the full D_r ∪ D_f with Adam on the KL to each sample's teacher."""
    bad = frozen_logits(incompetent_teacher(data), data, ["forget"], "bt.incompetent")
    good = frozen_logits(copy.deepcopy(model).eval(), data, ["retain"], "original")
    is_forget = torch.zeros(data.labels.numel(), dtype=torch.bool, device=data.device)
    is_forget[data.indices("forget")] = True
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    g = rng(data)
    model.train()
    for _ in range(hp.epochs):
        for x, _, idx in data.batches(["retain", "forget"], hp.batch_size, shuffle=True, generator=g,
                                      with_index=True):
            p = bt_targets(idx, is_forget, good, bad, hp.kl_temperature)
            loss = bt_loss(forward(model, x), p, hp.kl_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model
