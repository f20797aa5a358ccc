"""The two yardsticks: `original` (O unchanged) and `retrain` (R, fetched from the store by the stage)."""

from __future__ import annotations

from dataclasses import dataclass

from deepunlearn.methods.base import register_method


@dataclass
class NoParams:
    pass


@register_method("original", display="Original", hparams=NoParams, reference=True,
                 idea="the model trained on retain ∪ forget, unchanged (upper bound on memorisation)")
def original(model, data, hp: NoParams):
    """O itself."""
    return model


@register_method("retrain", display="Retrain", hparams=NoParams, reference=True,
                 idea="the model trained from scratch on the retain set only (the gold standard)")
def retrain(model, data, hp: NoParams):
    """Never called: the unlearn stage loads R from the store (its time is T_R)."""
    raise NotImplementedError("retrain is served from the store by trained.get_unlearned")
