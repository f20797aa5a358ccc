"""Stage configs and the functions the stage notebooks call, one module per stage."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import torch

from deepunlearn.errors import UserError

STAGES = ("train", "sweep", "unlearn", "attack", "analyze")
_CONFIGS: dict[str, type] = {}


def register_config(stage: str):
    """Class decorator: the dataclass that holds every parameter of `stage`'s notebook."""
    def deco(cls: type) -> type:
        _CONFIGS[stage] = cls
        return cls
    return deco


def config_class(stage: str) -> type:
    """The config dataclass of `stage` (its module is imported on first use, which registers it)."""
    if stage not in _CONFIGS and stage in STAGES:
        # imported here, not at package import, so `python -m deepunlearn.stages.<stage>` runs its
        # module once (runpy warns when the package has already imported the module it runs)
        importlib.import_module(f"deepunlearn.stages.{stage}")
    if stage not in _CONFIGS:
        raise UserError(f"Unknown stage {stage!r}; choose one of {', '.join(STAGES)}.")
    return _CONFIGS[stage]


def stage_config(stage: str, namespace: dict[str, Any]) -> Any:
    """Build `stage`'s config from the notebook's parameter variables (every field must be there)."""
    cls = config_class(stage)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise UserError(f"The {stage} notebook lacks parameters {', '.join(missing)}; add them to its parameters cell.")
    return cls(**{n: namespace[n] for n in names})


def make_config(stage: str, **params: Any) -> Any:
    """Build `stage`'s config from keyword parameters; an unknown key is an error, never ignored."""
    cls = config_class(stage)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise UserError(f"Unknown {stage} parameter(s) {', '.join(unknown)}; the known ones are {', '.join(sorted(names))}.")
    return cls(**params)


def read_params(path, sets: list[str] = ()) -> dict:
    """A params YAML file with command-line `KEY=VALUE` overrides (values read as YAML)."""
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.is_file():
        have = ", ".join(sorted(str(q) for q in path.parent.glob("*.yaml"))) or "none"
        raise UserError(f"No params file {path}; choose one of {have}.")
    try:
        params = yaml.safe_load(path.read_text()) or {}
        for item in sets:
            key, _, value = item.partition("=")
            params[key] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise UserError(f"{path} or a --set value is not valid YAML ({str(e).splitlines()[0]}); fix it.") from None
    if not isinstance(params, dict):
        raise UserError(f"{path} holds no `key: value` mapping; write one parameter per line.")
    return params


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA if present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)

