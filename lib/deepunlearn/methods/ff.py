"""FF: Fisher Forgetting, noise scaled by the inverse diagonal Fisher of the retain set (spec D.9)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import BATCH_SIZES, memo, register_method, sharing
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


SHARE_BYTES = 1 << 30  # most memory the sweep's one-pass Fisher may hold in running batch gradients


def fisher_diagonal(model: nn.Module, data: DeviceData, batch_size: int) -> list[torch.Tensor]:
    """Σ_batches Σ_y mean_batch(p(y|x)) · (∇ mean CE(f(x), y))², divided by the number of batches.

    One forward and C backward passes per retain batch (unshuffled), in eval mode, as the reference.
    """
    return fisher_diagonals(model, data, (batch_size,))[batch_size]


def fisher_diagonals(model: nn.Module, data: DeviceData, sizes: tuple[int, ...]) -> dict[int, list[torch.Tensor]]:
    """`fisher_diagonal` at every batch size in `sizes` from one pass over chunks of gcd(sizes) samples.

    A batch of b = m·c unshuffled samples is m consecutive chunks of c, and its batch-mean gradient and
    batch-mean p(y|x) are the size-weighted means of theirs: so the C backward passes per chunk serve
    every size (the same Fisher up to float rounding; at b = c it is the reference's computation).
    """
    chunk = math.gcd(*sizes)
    params = [p for p in model.parameters() if p.requires_grad]
    fisher = {b: [torch.zeros_like(p) for p in params] for b in sizes}
    n_batches = dict.fromkeys(sizes, 0)
    wider = [b for b in sizes if b > chunk]
    # per wider size: the running batch's Σ n·∇ for each class, Σ n·p̄ and its sample count
    grad_sum = {b: None for b in wider}
    prob_sum = {b: torch.zeros(data.num_classes, device=data.device) for b in wider}
    count = dict.fromkeys(wider, 0)

    def close(b: int) -> None:  # the running batch of size b is complete: add its term
        prob = prob_sum[b] / count[b]
        for y, grads in enumerate(grad_sum[b]):
            for f, g in zip(fisher[b], grads):
                f.add_(prob[y] * (g / count[b]).pow(2))
        grad_sum[b], count[b] = None, 0
        prob_sum[b].zero_()
        n_batches[b] += 1

    eval_for_training(model)  # eval mode; TinyViT's attention biases constant, as the reference
    for x, _ in data.batches("retain", chunk):
        logits = forward(model, x)
        prob = logits.detach().softmax(1).mean(0)  # mean_batch p(y|x), one weight per class
        n = len(x)
        class_grads = []
        for y in range(logits.shape[1]):
            target = torch.full((n,), y, dtype=torch.long, device=x.device)
            last = y == logits.shape[1] - 1
            grads = torch.autograd.grad(F.cross_entropy(logits, target), params, retain_graph=not last,
                                        materialize_grads=True)  # unused parameters: zero Fisher
            if chunk in fisher:
                for a, g in zip(fisher[chunk], grads):
                    a.add_(prob[y] * g.pow(2))
            if wider:
                class_grads.append(grads)
        if chunk in fisher:
            n_batches[chunk] += 1
        for b in wider:
            if grad_sum[b] is None:
                grad_sum[b] = [[g * n for g in grads] for grads in class_grads]
            else:
                for acc, grads in zip(grad_sum[b], class_grads):
                    for a, g in zip(acc, grads):
                        a.add_(g, alpha=n)
            prob_sum[b].add_(prob, alpha=n)
            count[b] += n
            if count[b] == b:
                close(b)
    for b in wider:
        if count[b]:
            close(b)  # the last, partial batch
    return {b: [f / max(n_batches[b], 1) for f in fisher[b]] for b in sizes}


def shared_sizes(model: nn.Module, data: DeviceData, batch_size: int) -> tuple[int, ...]:
    """The batch sizes a sweep trial's Fisher pass serves: all the searched ones if `batch_size` is one of them.

    The wider sizes hold C running batch gradients each (C × parameters floats); past SHARE_BYTES, or
    for a size the search never proposes, the pass serves `batch_size` alone.
    """
    sizes = tuple(sorted(BATCH_SIZES))
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    held = (len(sizes) - 1) * data.num_classes * n_params * 4
    return sizes if batch_size in sizes and held <= SHARE_BYTES else (batch_size,)


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
    def compute() -> dict[int, list[torch.Tensor]]:
        with torch.enable_grad():
            return fisher_diagonals(model, data, sizes)

    # the Fisher of the untouched Original (no RNG drawn): a sweep's trials share it, its first trial
    # computing it for every searched batch size in one pass; a final run computes its own size only
    sizes = shared_sizes(model, data, hp.batch_size) if sharing() else (hp.batch_size,)
    fisher = memo(("ff.fisher", sizes), compute)[hp.batch_size]
    params = [p for p in model.parameters() if p.requires_grad]
    for p, f in zip(params, fisher):
        var = fisher_variance(f, hp.alpha, data.num_classes)
        p.add_(var.sqrt() * torch.randn_like(p))  # noise from the global RNG seeded by run_method
    return model.train()  # back to the mode it came in; also frees TinyViT's graph-holding bias cache
