"""MSG: Masked Small Gradients, Kaggle 2023 unlearning competition, 2nd place (spec D.14)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import space
from deepunlearn.methods.base import memo, register_method, rng
from deepunlearn.training import forward, global_rng_state, set_global_rng_state, sgd, train_epoch

SUBSET_BATCH = 64  # the reference's retain-subset loader always uses batch 64
KEPT_GRAD_SCALE = 0.1  # gradient multiplier of the conv weights that were not re-initialised


@dataclass
class MSGParams:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    init_rate: float = 0.3  # fraction of each conv's weights re-initialised


# the values each field may take (checked before any work)
MSG_DOMAINS = {**space.STD_DOMAINS, "epochs": space.COUNT0, "init_rate": space.UNIT}


def msg_space(trial, ctx) -> dict:
    """STD + init_rate."""
    return {**space.std(trial, ctx), "init_rate": space.unit(trial, "init_rate")}


def lr_factor(epoch: int, epochs: int) -> float:
    """Linear warm-up to 1 over the first ⌊(E+1)/2⌋ epochs, then linear decay (0-based epoch)."""
    peak, end = (epochs + 1) // 2, epochs + 1
    e = epoch + 1
    return e / peak if e <= peak else (end - e) / (end - peak)


def accumulate_gradients(model: nn.Module, data: DeviceData, batch_size: int, g: torch.Generator) -> None:
    """Leave G = Σ∇CE(random retain subset of |D_f| samples) − Σ∇CE(D_f) in the parameters' .grad.

    Batch-mean gradients summed over batches with no zeroing in between, in train mode (BN statistics
    move), as the reference.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    retain = data.indices("retain")
    subset = retain[torch.randperm(retain.numel(), device=data.device, generator=g)[:data.size("forget")]]
    for x, y in data.batches(subset, SUBSET_BATCH, shuffle=True, generator=g):
        F.cross_entropy(forward(model, x), y).backward()
    for x, y in data.batches("forget", batch_size, shuffle=True, generator=g):
        (-F.cross_entropy(forward(model, x), y)).backward()


@torch.no_grad()
def restore(model: nn.Module, state: dict) -> None:
    """Put `state`'s gradients and buffers into `model` (a no-op on the model they were taken from)."""
    for p, grad in zip(model.parameters(), state["grads"]):
        p.grad = None if grad is None else grad.clone()
    for name, b in model.named_buffers():
        b.copy_(state["buffers"][name])


@torch.no_grad()
def reinit_small_gradients(model: nn.Module, init_rate: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """In every Conv2d, re-initialise the round(rate·n) weights with the smallest |.grad| (kaiming-normal).

    Returns (weight, gradient multiplier) pairs: 1.0 on re-initialised entries, 0.1 on the others.
    Linear layers are untouched, so on TinyViT only its convolutions are affected (reference).
    """
    masks = []
    for m in model.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        w = m.weight
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        n = round(init_rate * w.numel())
        chosen = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        chosen[grad.abs().reshape(-1).topk(n, largest=False).indices] = True
        chosen = chosen.view(w.shape)
        fresh = nn.init.kaiming_normal_(torch.empty_like(w), mode="fan_out", nonlinearity="relu")
        w.copy_(torch.where(chosen, fresh, w))
        masks.append((w, torch.where(chosen, 1.0, KEPT_GRAD_SCALE).to(w.dtype)))
    model.zero_grad(set_to_none=True)
    return masks


@register_method("msg", display="MSG", hparams=MSGParams, space=msg_space, domains=MSG_DOMAINS,
                 paper="NeurIPS 2023 Machine Unlearning competition, 2nd place (Triantafillou et al. 2024)",
                 idea="re-initialise the conv weights with the smallest retain-minus-forget gradients, "
                      "then fine-tune on retain with the kept weights' gradients scaled by 0.1")
def masked_small_gradients(model, data, hp: MSGParams):
    """Accumulate G, re-initialise the small-|G| conv weights, fine-tune on D_r with masked gradients."""
    g = rng(data)

    def compute() -> dict:
        accumulate_gradients(model, data, hp.batch_size, g)
        return {"grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
                "buffers": {k: b.clone() for k, b in model.named_buffers()},
                "gen": g.get_state(), "torch": global_rng_state(data.device)}

    # G and the BN statistics it moved depend on the untouched Original, the batch size and the run seed
    # only: a sweep's later trials with this batch size take them, and the RNG streams where they stood
    # (TinyViT's drop-path draws from the global one in train mode)
    after = memo(("msg.accumulate", hp.batch_size), compute)
    restore(model, after)
    g.set_state(after["gen"])
    set_global_rng_state(after["torch"], data.device)
    masks = reinit_small_gradients(model, hp.init_rate)

    def scale_gradients() -> None:  # the reference's masked conv: a persistent gradient multiplier
        for w, mult in masks:
            if w.grad is not None:
                w.grad.mul_(mult)

    opt = sgd(model, hp.lr, hp.momentum, hp.weight_decay)
    for epoch in range(hp.epochs):
        for group in opt.param_groups:
            group["lr"] = hp.lr * lr_factor(epoch, hp.epochs)
        train_epoch(model, opt, data.batches("retain", hp.batch_size, shuffle=True, generator=g),
                    after_backward=scale_gradients)
    return model
