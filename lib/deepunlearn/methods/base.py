"""Method registry, the hyperparameter plumbing and the timed, seeded call (spec D.0)."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepunlearn.data.loader import DeviceData, make_generator
from deepunlearn.errors import UserError
from deepunlearn.training import Timer

RUN_SEED = 123  # spec B.3 / D.0: setup_seed(123) right before unlearn(), for every model seed


@dataclass(frozen=True)
class SearchContext:
    """What a search space may depend on: E_max (spec D.1) and the dataset (UTKFace batch cap)."""

    e_max: int = 10
    dataset: str = ""

    @property
    def batch_sizes(self) -> list[int]:
        """Spec D.1 / F: {64, 128, 256}; UTKFace prunes 256, so it is never proposed there."""
        return [64, 128] if self.dataset == "utkface" else [64, 128, 256]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its function, hyperparameter dataclass, search space and paper facts."""

    name: str
    display: str
    fn: Callable[[nn.Module, DeviceData, Any], nn.Module]
    hparams: type
    space: Callable[[Any, SearchContext], dict] | None
    paper: str = ""
    idea: str = ""
    reference: bool = False  # `original` / `retrain`: not unlearning methods, the two yardsticks

    def make_hp(self, **values: Any) -> Any:
        """The hyperparameter dataclass from defaults and `values`; integer fields are cast (spec F)."""
        fields = {f.name: f for f in dataclasses.fields(self.hparams)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(f"Method {self.name!r} has no hyperparameter(s) {', '.join(unknown)}; "
                            f"its hyperparameters are {', '.join(fields) or 'none'}.")
        cast = {k: (int(v) if fields[k].type in ("int", int) else v) for k, v in values.items()}
        return self.hparams(**cast)

    def searched(self) -> list[str]:
        """Names of the hyperparameters the search samples (fixed ones like momentum 0.9 excluded)."""
        if self.space is None:
            return []
        from deepunlearn.methods.space import RecordingTrial

        trial = RecordingTrial()
        self.space(trial, SearchContext())
        return trial.names


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, display: str, hparams: type, space: Callable | None = None, paper: str = "",
                    idea: str = "", reference: bool = False) -> Callable:
    """Decorator registering `fn(model, data, hp) -> model` under `name` (a user's own method too)."""
    def deco(fn: Callable) -> Callable:
        _METHODS[name] = MethodSpec(name, display, fn, hparams, space, paper, idea, reference)
        return fn
    return deco


def list_methods(include_references: bool = True) -> list[str]:
    """Registered method ids (references `original` and `retrain` last)."""
    methods = [n for n, s in _METHODS.items() if not s.reference]
    refs = [n for n, s in _METHODS.items() if s.reference] if include_references else []
    return methods + refs


def get_method(name: str) -> MethodSpec:
    """The registry entry of `name`, or a one-sentence error listing the known ids."""
    if name not in _METHODS:
        raise UserError(f"Unknown method {name!r}; choose one of {', '.join(list_methods())}.")
    return _METHODS[name]


def create_method(name: str, **hp: Any) -> Callable[[nn.Module, DeviceData], nn.Module]:
    """`name` bound to its hyperparameters: a callable `(model, data) -> unlearned model`."""
    spec = get_method(name)
    params = spec.make_hp(**hp)
    return lambda model, data: spec.fn(model, data, params)


def seed_everything(seed: int) -> None:
    """Spec B.3's setup_seed: torch (CPU and CUDA), numpy and `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng(data: DeviceData) -> torch.Generator:
    """A generator on the data's device, seeded from the run seed: the method's shuffles and draws."""
    return make_generator(data.device, torch.initial_seed())


def run_method(name: str, original: nn.Module, data: DeviceData, hp: dict | Any | None = None,
               seed: int = RUN_SEED) -> tuple[nn.Module, float]:
    """Unlearn with `name` on a private copy of `original`; returns (model, seconds).

    The timed region holds the deep copy and the whole method (spec D.0); the input is untouched.
    """
    spec = get_method(name)
    if spec.reference:
        raise UserError(f"{name!r} is a reference model, not a method; the unlearn stage fetches it from the store.")
    params = hp if dataclasses.is_dataclass(hp) else spec.make_hp(**(hp or {}))
    seed_everything(seed)
    with Timer(data.device) as t:
        model = copy.deepcopy(original)
        model.train()
        model = spec.fn(model, data, params)
    return model, t.seconds
