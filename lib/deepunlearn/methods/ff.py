"""FF: Fisher Forgetting, noise scaled by the inverse diagonal Fisher of the retain set (spec D.9)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import memo, register_method
from deepunlearn.models import eval_for_training
from deepunlearn.training import forward


@dataclass
class FFParams:
    batch_size: int = 64
    alpha: float = 0.2  # noise scale multiplying the inverse Fisher


# the values each field may take (checked before any work)
FF_DOMAINS = {"batch_size": space.COUNT, "alpha": space.NONNEG}


def ff_space(trial, ctx) -> dict:
    """Batch size and alpha; no epochs (no gradient training)."""
    return {"batch_size": space.batch_size(trial, ctx), "alpha": space.unit(trial, "alpha")}


def fisher_diagonal(model: nn.Module, data: DeviceData, batch_size: int) -> list[torch.Tensor]:
    """Σ_batches Σ_y mean_batch(p(y|x)) · (∇ mean CE(f(x), y))², divided by the number of batches.

    One forward and C backward passes per retain batch (unshuffled), in eval mode, as the reference.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    acc = [torch.zeros_like(p) for p in params]
    n_batches = 0
    eval_for_training(model)  # eval mode; TinyViT's attention biases constant, as the reference
    for x, _ in data.batches("retain", batch_size):
        logits = forward(model, x)
        prob = logits.detach().softmax(1).mean(0)  # mean_batch p(y|x), one weight per class
        for y in range(logits.shape[1]):
            target = torch.full((len(x),), y, dtype=torch.long, device=x.device)
            last = y == logits.shape[1] - 1
            grads = torch.autograd.grad(F.cross_entropy(logits, target), params, retain_graph=not last,
                                        materialize_grads=True)  # unused parameters: zero Fisher
            for a, g in zip(acc, grads):
                a.add_(prob[y] * g.pow(2))
        n_batches += 1
    return [a / max(n_batches, 1) for a in acc]


def fisher_variance(fisher: torch.Tensor, alpha: float, num_classes: int) -> torch.Tensor:
    """The reference's per-tensor noise variance from its diagonal Fisher (spec D.9 step 4)."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e3)
    is_head = fisher.shape[0] == num_classes  # the reference's "last layer" heuristic
    if is_head:
        var = var.clamp(max=1e2)
    var = alpha * var
    if var.ndim > 1:  # one variance per output unit
        var = var.mean(dim=1, keepdim=True).expand_as(fisher)
    if is_head or var.ndim == 1:  # classifier and 1-D (BN / bias) tensors get 10× more noise
        var = 10 * var
    return var


@register_method("ff", display="FF", hparams=FFParams, space=ff_space, domains=FF_DOMAINS,
                 paper="Golatkar et al. 2020 (Eternal Sunshine of the Spotless Net)",
                 idea="add Gaussian noise to every weight with variance α / (retain-set diagonal Fisher)")
@torch.no_grad()
def fisher_forgetting(model, data, hp: FFParams):
    """θ = θ_O + √var ⊙ N(0, I); BN running statistics untouched (eval mode, no training)."""
    def compute() -> list[torch.Tensor]:
        with torch.enable_grad():
            return fisher_diagonal(model, data, hp.batch_size)

    # the Fisher of the untouched Original: a sweep's trials with one batch size share it (no RNG drawn)
    fisher = memo(("ff.fisher", hp.batch_size), compute)
    params = [p for p in model.parameters() if p.requires_grad]
    for p, f in zip(params, fisher):
        var = fisher_variance(f, hp.alpha, data.num_classes)
        p.add_(var.sqrt() * torch.randn_like(p))  # noise from the global RNG seeded by run_method
    return model.train()  # back to the mode it came in; also frees TinyViT's graph-holding bias cache
