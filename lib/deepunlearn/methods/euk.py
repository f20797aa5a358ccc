"""EU-k: Exact Unlearning, re-initialise the last k blocks and the classifier, retrain them (spec D.12)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepunlearn.methods.base import register_method
from deepunlearn.methods.cfk import CFK_DOMAINS, CFKParams, cfk_space, finetune_last_k, last_k


@dataclass
class EUKParams(CFKParams):
    """As CF-k (the reference's training_epoch_factor is sampled but unused: left out)."""


def euk_space(trial, ctx) -> dict:
    """CF-k's space."""
    return cfk_space(trial, ctx)


@torch.no_grad()
def reinitialize(parts: list[nn.Module]) -> None:
    """Conv2d kaiming-uniform (fan_out, relu), BN (1, 0), Linear xavier-uniform; biases 0.

    BN running statistics, LayerNorms and TinyViT attention biases are left as they are (reference).
    """
    for part in parts:
        for m in part.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                nn.init.ones_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@register_method("euk", display="EU-k", hparams=EUKParams, space=euk_space, domains=CFK_DOMAINS,
                 paper="Goel et al. 2022 (Towards Adversarial Evaluation of Machine Unlearning)",
                 idea="re-initialise the last k blocks and the classifier, then retrain only them on the retain set")
def exact_unlearning_k(model, data, hp: EUKParams):
    """Re-initialise the last k blocks + classifier, then CF-k's loop from there with augmented retain data."""
    parts = last_k(model, hp.num_blocks)
    reinitialize(parts)
    return finetune_last_k(model, data, hp, parts, augment=True)
