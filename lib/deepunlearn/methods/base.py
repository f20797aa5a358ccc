"""Method registry, the hyperparameter plumbing and the timed, seeded call (spec D.0)."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import inspect
import math
import random
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from deepunlearn.data.loader import DeviceData, make_generator
from deepunlearn.errors import UserError
from deepunlearn.training import Timer, predict

RUN_SEED = 123  # spec B.3 / D.0: setup_seed(123) right before unlearn(), for every model seed


@dataclass(frozen=True)
class Domain:
    """The values a hyperparameter may take: an interval, each end open or closed or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v: Any) -> bool:
        if isinstance(v, (list, tuple)):  # a per-epoch schedule, e.g. RNI's fine_lr
            return len(v) > 0 and all(x in self for x in v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return False
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '≤'} {self.high:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


COUNT = Domain(1)  # epochs, batch sizes, block counts: at least one
COUNT0 = Domain(0)  # counts where 0 means "skip this phase"
POSITIVE = Domain(0, low_open=True)  # learning rates, temperatures
NONNEG = Domain(0)  # weight decays, noise scales, loss weights
UNIT = Domain(0, 1)  # fractions and convex weights
MOMENTUM = Domain(0, 1, high_open=True)
# Fields a method need not declare: a plugin's `epochs` or `lr` is checked like a built-in's.
CONVENTIONAL = {"epochs": COUNT, "batch_size": COUNT, "lr": POSITIVE, "momentum": MOMENTUM, "weight_decay": NONNEG}


BATCH_SIZES = [64, 128, 256]  # spec D.1's batch_size primitive


@dataclass(frozen=True)
class SearchContext:
    """What a search space may depend on: E_max (spec D.1) and the dataset (UTKFace batch cap)."""

    e_max: int = 10
    dataset: str = ""

    @property
    def batch_sizes(self) -> list[int]:
        """Choices of a method's `batch_size` (spec D.1 / F): UTKFace prunes 256, so it is never proposed there."""
        return [b for b in BATCH_SIZES if b <= 128] if self.dataset == "utkface" else list(BATCH_SIZES)


class Unlearner(Protocol):
    """The method contract (spec D.0): a private copy of the Original model, the device data
    (retain, forget, val), the hyperparameter dataclass; returns the unlearned model. Deterministic
    under the run seed; all of its work happens inside the call, which is timed."""

    def __call__(self, model: nn.Module, data: DeviceData, hp: Any, /) -> nn.Module: ...


CONTRACT = ("model", "data", "hp")  # the positional parameters every method takes, in this order


def check_contract(name: str, fn: Callable) -> None:
    """A method must be `fn(model, data, hp) -> model`; anything else is one sentence at registration."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_rest = [p for p in params[len(positional):] if p.default is p.empty and p.kind == p.KEYWORD_ONLY]
    if tuple(p.name for p in positional) != CONTRACT or required_rest:
        raise UserError(f"Method {name!r} is {fn.__name__}{inspect.signature(fn)}; a method must be "
                        f"fn(model, data, hp) -> model (methods.Unlearner).")


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its function, hyperparameter dataclass, search space and paper facts."""

    name: str
    display: str
    fn: Unlearner
    hparams: type
    space: Callable[[Any, SearchContext], dict] | None
    paper: str = ""
    idea: str = ""
    reference: bool = False  # `original` / `retrain`: not unlearning methods, the two yardsticks
    domains: dict[str, Domain] = dataclasses.field(default_factory=dict)  # field -> the values it may take

    def make_hp(self, **values: Any) -> Any:
        """The hyperparameter dataclass from defaults and `values`, checked; integer fields are cast (spec F)."""
        fields = {f.name: f for f in dataclasses.fields(self.hparams)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(f"Method {self.name!r} has no hyperparameter(s) {', '.join(unknown)}; "
                            f"its hyperparameters are {', '.join(fields) or 'none'}.")
        cast = {}
        for k, v in values.items():
            if fields[k].type in ("int", int) and not isinstance(v, bool):
                try:
                    v = int(v)
                except (TypeError, ValueError, OverflowError):
                    raise UserError(f"Method {self.name!r}: {k}={v!r} is not a number; give an integer.") from None
            cast[k] = v
        return self.check_hp(self.hparams(**cast))

    def domain(self, field: str) -> Domain | None:
        """The declared domain of `field` (a conventional one for epochs, batch_size, lr, … if undeclared)."""
        return self.domains.get(field, CONVENTIONAL.get(field))

    def check_hp(self, hp: Any) -> Any:
        """`hp` itself when every field lies in its domain, else one sentence naming the first that does not."""
        for f in dataclasses.fields(hp):
            d, v = self.domain(f.name), getattr(hp, f.name)
            if d is not None and v not in d:
                where = str(d) if d.low is None or d.high is None else f"in {d}"
                raise UserError(f"Method {self.name!r}: hyperparameter {f.name}={v!r} is outside its domain {d}; "
                                f"set {f.name} to a value {where}.")
        return hp

    def check_space(self, ctx: SearchContext) -> None:
        """One sentence if the search space cannot be sampled: an empty range, an error, a value outside its domain."""
        from deepunlearn.methods.space import ProbeTrial

        if self.space is None:
            raise UserError(f"Method {self.name!r} has no search space; remove it from the sweep's methods.")
        try:
            hp = self.space(ProbeTrial(), ctx)
        except Exception as e:  # noqa: BLE001  the user's space function: any error is a bad space
            raise UserError(f"The search space of method {self.name!r} cannot be sampled "
                            f"({type(e).__name__}: {str(e).rstrip('.')}); fix its space function.") from None
        try:
            self.make_hp(**hp)
        except UserError as e:
            raise UserError(f"The search space of method {self.name!r} proposes values its method rejects: "
                            f"{str(e).rstrip('.')}.") from None

    def searched(self) -> list[str]:
        """Names of the hyperparameters the search samples (fixed ones like momentum 0.9 excluded)."""
        if self.space is None:
            return []
        from deepunlearn.methods.space import RecordingTrial

        trial = RecordingTrial()
        self.space(trial, SearchContext())
        return trial.names


def is_epochs_field(name: str) -> bool:
    """True for our epoch counts (`epochs`, `retain_epochs`, …), the reference's `*num_epochs` names."""
    return name == "epochs" or name.endswith("_epochs")


def final_hparams(method: str, params: dict) -> dict:
    """The chosen trial's values as the final runs use them (spec F): integer fields and every epochs field int.

    The reference casts by name: any hyperparameter ending in `num_epochs` becomes int(value), float-typed or
    not, so PRMQ's float epochs are searched as floats but truncated for the final runs.
    """
    cast = {k: int(v) if is_epochs_field(k) and isinstance(v, float) else v for k, v in params.items()}
    return dict(vars(get_method(method).make_hp(**cast)))  # make_hp casts the integer-typed fields


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, display: str, hparams: type, space: Callable | None = None, paper: str = "",
                    idea: str = "", reference: bool = False, domains: dict[str, Domain] | None = None) -> Callable:
    """Decorator registering `fn(model, data, hp) -> model` under `name` (a user's own method too).

    `domains` maps hyperparameter names to the values they may take; a value outside stops the run
    before any work. Undeclared `epochs`, `batch_size`, `lr`, `momentum`, `weight_decay` get the usual ones.
    """
    def deco(fn: Callable) -> Callable:
        check_contract(name, fn)
        _METHODS[name] = MethodSpec(name, display, fn, hparams, space, paper, idea, reference, dict(domains or {}))
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
    params = spec.check_hp(hp) if dataclasses.is_dataclass(hp) else spec.make_hp(**(hp or {}))
    seed_everything(seed)
    with Timer(data.device) as t:
        model = copy.deepcopy(original)
        model.train()
        model = spec.fn(model, data, params)
    return model, t.seconds


# ---------------------------------------------------------------- work shared by the trials of one study

T = TypeVar("T")
_STUDY_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("study_cache", default=None)


@contextlib.contextmanager
def study_cache(cache: dict | None) -> Iterator[dict | None]:
    """Within this block, `memo` keeps its values in `cache`: one dict per study (one Original, one data); None: off.

    Only a sweep's trials use it (DESIGN 7: what does not depend on a trial is computed once per study).
    A final run never does, so the time it records holds all of the method's work (spec E.4).
    """
    token = _STUDY_CACHE.set(cache)
    try:
        yield cache
    finally:
        _STUDY_CACHE.reset(token)


def memo(key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, or inside `study_cache` its value kept from an earlier trial of the same study.

    `key` must name everything besides the Original and the data that the value depends on (e.g. the
    batch size), and `compute` must read the model before the method changes it. Values are shared
    between trials, never modified.
    """
    cache = _STUDY_CACHE.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def sharing() -> bool:
    """True inside `study_cache` (a sweep's trial): work that depends on the Original only may be kept for later trials."""
    return _STUDY_CACHE.get() is not None


def timed_only(fn: Callable[[], object]) -> None:
    """Call `fn`, work the reference does inside its timed region but whose result nothing reads; trials skip it.

    A final run does it, so its time holds all of the reference's work (spec E.4). Inside a sweep's
    trials (`study_cache` on) it is left out: it changes neither the model nor any RNG stream, so a
    trial's objective is bit-identical without it.
    """
    if not sharing():
        fn()


def frozen_logits(model: nn.Module, data: DeviceData, splits: list[str], key: str) -> torch.Tensor:
    """A frozen teacher's eval-mode fp32 logits for every sample of `splits`: a table indexed by dataset position.

    The distillation methods show their teacher each sample without augmentation, so its output for
    a sample is the same in every epoch: one pass over `splits` replaces one teacher forward per batch
    of every epoch (the same logits up to float rounding: other batch compositions). In a sweep the
    table is also kept for the study's later trials (`memo`); `key` names the teacher (e.g. "original").
    Rows outside `splits` are zero.
    """
    def compute() -> torch.Tensor:
        idx = data.indices(splits)
        table = torch.zeros(data.labels.numel(), data.num_classes, device=data.device)
        table[idx] = predict(model, data, idx)
        return table

    return memo(("frozen_logits", key, tuple(splits)), compute)
