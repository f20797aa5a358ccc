"""Every stage's parameters as a dataclass, and the one strict loader of params files and overrides.

make, render, the notebooks' first cell and the command line all go through `load` (or
`from_notebook`): an unknown key or a value of the wrong type stops before any work with one
sentence naming the key, where it came from and the valid keys. A params file is a flat YAML
delta over the dataclass defaults; `inherit: <name>` first reads params/<stage>/<name>.yaml (the
paper's U-LiRA delta over its attack protocol).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepunlearn import paths
from deepunlearn.errors import UserError

# keys that an earlier version used, with what replaced them (suggested whatever their spelling distance)
RENAMED = {"train": "profile"}


@dataclass
class TrainConfig:
    """Parameters of notebooks/train.py: the data and recipe of the Original and Retrained models."""

    dataset: str = "fashion_mnist"  # registry name: mnist, fashion_mnist, cifar10, cifar100, utkface, digits
    arch: str = "smallresnet"  # resnet18, tinyvit, smallresnet (CPU demo), tinycnn (tests)
    seeds: list[int] = field(default_factory=lambda: [0])  # model initialisation seeds (the paper: 0-9)
    subset: int | None = None  # train on a seeded sample of this many official-train images; None: all
    epochs: int | None = None  # None: the dataset's recipe (spec C: 50, CIFAR 182)
    batch_size: int | None = None  # None: the dataset's recipe (256, UTKFace 128)
    lr: float = 0.1  # SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # SGD weight decay
    device: str = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
    store: str = "outputs/store"  # content-addressed artifact store (relative: under the project root)
    data_root: str | None = None  # folder of the datasets; None: $DEEPUNLEARN_DATA, <root>/data, system copies
    download: bool = False  # fetch a missing dataset with torchvision (never in tests)
    progress: bool = True  # a progress line per training run


@dataclass
class SweepConfig:
    """Parameters of notebooks/sweep.py (and of each sweep worker)."""

    name: str = "demo"  # results go to outputs/sweeps/<name>/<dataset>-<arch>/ (best.yaml, SQLite studies)
    profile: str = "demo"  # params/train/<profile>.yaml: data and recipe of the Original/Retrained models
    dataset: str | None = None  # None: the profile's dataset
    arch: str | None = None  # None: the profile's architecture
    methods: list[str] = field(default_factory=lambda: ["ft"])  # method ids, or ["all"]
    seeds: list[int] = field(default_factory=lambda: [0])  # one study per seed (the paper: 0, 1, 2)
    n_trials: int = 8  # complete trials per study (the paper: 100)
    replicate: int = 0  # independent replicate of the whole search: shifts every sampler seed (0: the paper's)
    ulira: bool = False  # search on U-LiRA shadows (spec G.2): one study per split s, forget set 0, not per seed
    ulira_splits: int = 4  # with `ulira`: the splits 0..N-1 searched (the paper: 32 of its 64)
    ulira_seed: int = 0  # with `ulira`: the shadows' initialisation seed (the attack's ulira_seed)
    ulira_epochs: int | None = None  # with `ulira`: shadow O/R epochs, and E_max from them (the paper: 91, E_max 19)
    storage: str | None = None  # None: SQLite per study; postgresql://user@host/db for many workers
    join: bool = True  # a worker left with no free study helps finish the others' (False: each study draws as one worker)
    heartbeat: int = 60  # seconds between worker heartbeats; a trial silent for 2x this is retried
    plugins: list[str] = field(default_factory=list)  # .py files defining your own methods
    device: str = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
    store: str = "outputs/store"  # content-addressed artifact store
    progress: bool = True  # a line per trial


@dataclass
class MethodsConfig:
    """What the unlearn and attack stages share: the models they start from and the methods they run."""

    profile: str = "demo"  # params/train/<profile>.yaml: the data and recipe of the Original/Retrained models
    dataset: str | None = None  # None: the profile's dataset
    arch: str | None = None  # None: the profile's architecture
    methods: list[str] = field(default_factory=lambda: ["ft"])  # method ids, or ["all"] for the 18
    plugins: list[str] = field(default_factory=list)  # .py files (or modules) defining your own methods
    hparams: dict = field(default_factory=dict)  # {method: {hyperparameter: value}}; missing: defaults
    best: str | None = None  # a sweep name: its best.yaml for this (dataset, arch) gives the hyperparameters
    seeds: list[int] | None = None  # None: the profile's seeds


@dataclass
class UnlearnConfig(MethodsConfig):
    """Parameters of notebooks/unlearn.py."""

    device: str = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
    store: str = "outputs/store"  # content-addressed artifact store
    progress: bool = True  # a line per run


@dataclass
class AttackConfig(MethodsConfig):
    """Parameters of notebooks/attack.py (the Original and Retrained rows are always added to `methods`)."""

    ulira: bool = False  # also run U-LiRA
    ulira_methods: list[str] | None = None  # methods U-LiRA attacks (None: `methods`); O and R always
    ulira_splits: int = 8  # shadow train/held-out splits (the paper: 64)
    ulira_forget_sets: int = 2  # forget sets per split (the paper: 10)
    ulira_seed: int = 0  # initialisation seed of every shadow (the paper: 0); its rows get the U-LiRA columns
    ulira_epochs: int | None = None  # shadow O/R epochs (None: the recipe's; the paper: 91 on CIFAR-10)
    ulira_statistic: str = "logit"  # "logit" (logit-scaled confidence) or "correct" (the reference's 0/1)
    ulira_share_original: bool = True  # one Original per split (False: per (split, forget set), the paper)
    ulira_best: str | None = None  # a U-LiRA sweep (`ulira: true`) whose best.yaml tunes ulira_methods; None: `best`
    device: str = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
    store: str = "outputs/store"  # content-addressed artifact store
    progress: bool = True  # a line per model trained or attacked


@dataclass
class AnalyzeConfig:
    """Parameters of notebooks/analyze.py."""

    name: str = "demo"  # names the outputs: <out>/reports/<name>/ and <out>/figures/<name>/
    attack: list[str] = field(default_factory=lambda: ["demo"])  # attack configs, each "NAME" or "NAME@dataset/arch"
    replicates: list[str] = field(default_factory=list)  # attack entries as `attack`, from a replicate sweep: τ
    sweeps: list[str] = field(default_factory=list)  # sweep configs, 2 replicates a pair (ours first): τ vs budget
    out: str = "outputs"  # root of the reports/ and figures/ folders
    figures: str | None = None  # tables and figures folder; None: <out>/figures/<name> (paper: figures)
    from_results: bool = False  # True: reuse <out>/reports/<name>/ (results and curves), asking the store nothing
    level: float = 0.95  # bootstrap confidence level
    n_boot: int = 2000  # bootstrap resamples
    alpha: float = 0.05  # Nemenyi significance level
    friedman_by: str = "seed"  # Friedman blocks: "seed" (dataset, arch, seed) or "pair" (dataset, arch)
    loss_seed: int | None = None  # seed of the MIA loss histograms; None: each config's first
    nb: str = "outputs/nb"  # executed stage notebooks whose papermill run times the report lists
    device: str | None = None  # None: each attack config's own device
    store: str = "outputs/store"  # content-addressed artifact store
    progress: bool = True  # a line per collected config


@dataclass
class LaunchConfig:
    """How `deepunlearn launch` spreads a stage's units over jobs (params/launch/<name>.yaml; no notebook)."""

    executor: str = "local"  # "local" (processes on this machine) or "slurm" (sbatch job arrays via submitit)
    workers: int = 2  # jobs per stage, each one worker of its units (the sweep: of its trials)
    gpus_per_node: int = 0  # GPUs per job; on one multi-GPU node, 1 gives one worker per GPU
    cpus_per_task: int = 2  # CPU cores per job
    mem_gb: float | None = None  # memory per job; None: the partition's default
    timeout_min: int = 60  # wall-clock limit per job, minutes
    partition: str | None = None  # Slurm partition; None: the cluster's default
    account: str | None = None  # Slurm account to charge
    max_running: int = 256  # array tasks running at once
    slurm: dict = field(default_factory=dict)  # more sbatch options, e.g. {qos: high}
    render: bool = True  # after the jobs, render the stage's notebook here from what they built


CONFIGS: dict[str, type] = {"train": TrainConfig, "sweep": SweepConfig, "unlearn": UnlearnConfig,
                            "attack": AttackConfig, "analyze": AnalyzeConfig, "launch": LaunchConfig}


def config_class(stage: str) -> type:
    """The config dataclass of `stage`."""
    if stage not in CONFIGS:
        raise UserError(f"Unknown stage {stage!r}; choose one of {', '.join(CONFIGS)}.")
    return CONFIGS[stage]


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], _type_name(args[0]))}" if args else "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", dict: "a mapping"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:  # YAML reads 1 as an int: any number is a float parameter's value
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def check(stage: str, params: dict, source: str) -> dict:
    """`params` if every key is a parameter of `stage` with a value of its type; else one sentence."""
    cls = config_class(stage)
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), list(hints), n=1, cutoff=0.5)
            if key in RENAMED and RENAMED[key] in hints:
                close = [RENAMED[key]]
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise UserError(f"{source}: unknown {stage} parameter `{key}`{hint}; the {stage} parameters are "
                            f"{', '.join(hints)}.")
        if not _matches(value, hints[key]):
            raise UserError(f"{source}: `{key}` must be {_type_name(hints[key])}, not {value!r}; fix its value.")
    return params


def parse_sets(items: list[str] | tuple[str, ...]) -> dict:
    """`KEY=VALUE` command-line overrides, each value read as YAML (`seeds=[0,1]`, `epochs=2`)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {item!r} is not KEY=VALUE; write e.g. --set epochs=2.")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UserError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]}); "
                            f"quote it.") from None
    return out


def _read_file(stage: str, path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        have = ", ".join(paths.params_names(stage)) if path.parent == paths.root() / "params" / stage else ""
        raise UserError(f"No params file {path}; choose {'an' if stage[0] in 'aeiou' else 'a'} {stage} config from "
                        f"{have or 'the params/ folder'}.")
    text = path.read_text()
    if not text.strip():  # a zero-byte file is a failed write or a slip; all defaults is said with a comment
        raise UserError(f"{path} is empty; write one `key: value` line per parameter that differs from the "
                        f"defaults (or a comment, to keep them all).")
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); fix the file.") from None
    if params is None:  # comments only: every default
        params = {}
    if not isinstance(params, dict):
        raise UserError(f"{path} holds a {type(params).__name__}, not a `key: value` mapping; write one "
                        f"parameter per line.")
    base = params.pop("inherit", None)
    if base is not None:
        parent = paths.params_file(stage, str(base))
        if parent in seen or parent == path:
            raise UserError(f"{path}: `inherit: {base}` makes a loop; point it at another config.")
        params = {**_read_file(stage, parent, (*seen, path)), **params}
    return check(stage, params, str(path))


def read(stage: str, name: str | Path, sets: list[str] | tuple[str, ...] = (), /, **overrides: Any) -> dict:
    """The checked parameters of a params file (a config name or a path), then `--set` items, then overrides."""
    path = Path(name) if str(name).endswith((".yaml", ".yml")) else paths.params_file(stage, str(name))
    params = _read_file(stage, paths.resolve(path))
    params.update(check(stage, parse_sets(sets), "--set"))
    params.update(check(stage, overrides, "the caller's overrides"))
    return params


def build(stage: str, params: dict, source: str = "parameters") -> Any:
    """`stage`'s config from a dict of parameters, each checked."""
    return config_class(stage)(**check(stage, dict(params), source))


def make_config(stage: str, /, **params: Any) -> Any:
    """`stage`'s config from keyword parameters, each checked (code and tests)."""
    return build(stage, params)


def load(stage: str, name: str | Path, sets: list[str] | tuple[str, ...] = (), /, **overrides: Any) -> Any:
    """The config of params/<stage>/<name>.yaml with `--set` items and overrides, checked."""
    return build(stage, read(stage, name, sets, **overrides), f"params/{stage}/{name}")


def from_notebook(stage: str, namespace: dict[str, Any]) -> Any:
    """`stage`'s config from a notebook's parameter variables (each must be there, each of its type)."""
    names = [f.name for f in dataclasses.fields(config_class(stage))]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise UserError(f"The {stage} notebook lacks parameters {', '.join(missing)}; add them to its parameters cell.")
    return build(stage, {n: namespace[n] for n in names}, f"the {stage} notebook's parameters")


def defaults(stage: str) -> dict:
    """Every parameter of `stage` with its default value."""
    cfg = config_class(stage)()
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
