"""Spec D.1 search primitives; every method's space is built from these."""

from __future__ import annotations

import math
from typing import Any

from deepunlearn.methods.base import BATCH_SIZES, COUNT, COUNT0, NONNEG, POSITIVE, UNIT, Domain, SearchContext
from deepunlearn.methods.base import MOMENTUM as MOMENTUM_DOMAIN

MOMENTUM = 0.9  # spec D.1: "searched" on [0.9, 0.9], i.e. fixed
# The domains of the STD block's fields; each method file declares its own fields' domains beside it.
STD_DOMAINS: dict[str, Domain] = {"epochs": COUNT, "batch_size": COUNT, "lr": POSITIVE, "momentum": MOMENTUM_DOMAIN,
                                  "weight_decay": NONNEG}
__all__ = ["COUNT", "COUNT0", "MOMENTUM_DOMAIN", "NONNEG", "POSITIVE", "STD_DOMAINS", "UNIT", "Domain"]


def log_uniform(trial: Any, name: str, low: float = 1e-5, high: float = 1e-1) -> float:
    """learning_rate / weight_decay primitive: float, log scale."""
    return trial.suggest_float(name, low, high, log=True)


def unit(trial: Any, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """`float` primitive: uniform on [0, 1] (or a given range)."""
    return trial.suggest_float(name, low, high)


def temperature(trial: Any, name: str = "temperature") -> float:
    """Temperature primitive: uniform on [0, 5]."""
    return trial.suggest_float(name, 0.0, 5.0)


def epochs(trial: Any, ctx: SearchContext, name: str = "epochs") -> int:
    """num_epochs primitive: int in [1, E_max]."""
    return trial.suggest_int(name, 1, ctx.e_max)


def batch_size(trial: Any, ctx: SearchContext, name: str = "batch_size") -> int:
    """batch_size primitive: {64, 128, 256}; a field named `batch_size` gets {64, 128} on UTKFace."""
    # the reference prunes a UTKFace trial on its `batch_size` alone, so SCRUB's retain and forget
    # batch sizes (and any other batch-size field) keep 256 there
    return trial.suggest_categorical(name, ctx.batch_sizes if name == "batch_size" else list(BATCH_SIZES))


def std(trial: Any, ctx: SearchContext) -> dict:
    """Spec's STD block: lr and weight decay (log 1e-5..1e-1), momentum fixed 0.9, batch size, epochs."""
    return {"lr": log_uniform(trial, "lr"), "momentum": MOMENTUM,
            "weight_decay": log_uniform(trial, "weight_decay"),
            "batch_size": batch_size(trial, ctx), "epochs": epochs(trial, ctx)}


class RecordingTrial:
    """A stand-in trial that answers with the low end of every range and records the names asked."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, step: float | None = None) -> float:
        self.names.append(name)
        return low

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.names.append(name)
        return low

    def suggest_categorical(self, name: str, choices: list) -> Any:
        self.names.append(name)
        return choices[0]


class ProbeTrial(RecordingTrial):
    """A stand-in trial that checks each range as Optuna would and answers with its middle."""

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, step: float | None = None) -> float:
        import optuna

        super().suggest_float(name, low, high, log, step)
        optuna.distributions.FloatDistribution(low, high, log=log, step=step)  # raises on an empty range
        return math.sqrt(low * high) if log else (low + high) / 2

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        import optuna

        super().suggest_int(name, low, high, step, log)
        optuna.distributions.IntDistribution(low, high, log=log, step=step)
        return low + (high - low) // (2 * step) * step

    def suggest_categorical(self, name: str, choices: list) -> Any:
        import optuna

        optuna.distributions.CategoricalDistribution(choices)  # raises on no choices
        return super().suggest_categorical(name, choices)
