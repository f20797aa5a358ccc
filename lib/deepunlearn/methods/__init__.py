"""Unlearning methods: a registry (timm style), one file per method.

A method is `fn(model, data, hp) -> model` registered with `@register_method`. It receives the
Original model (already a private copy, in train mode) and a DeviceData holding retain, forget
and val; it must be deterministic under the run seed (`rng(data)`, `torch` global RNG) and do all
of its work inside the call, because the whole call is timed (spec D.0, E.4).
"""

from deepunlearn.methods.base import (
    MethodSpec,
    SearchContext,
    Unlearner,
    create_method,
    final_hparams,
    frozen_logits,
    get_method,
    list_methods,
    memo,
    register_method,
    rng,
    run_method,
    sharing,
    study_cache,
    timed_only,
)

__all__ = [
    "MethodSpec",
    "SearchContext",
    "Unlearner",
    "create_method",
    "final_hparams",
    "frozen_logits",
    "get_method",
    "list_methods",
    "load_builtin_methods",
    "load_plugins",
    "memo",
    "register_method",
    "rng",
    "run_method",
    "sharing",
    "study_cache",
    "timed_only",
]


PAPER_ORDER = ["ft", "ga", "srl", "ngplus", "bt", "scrub", "salun", "ff", "iu", "cfk", "euk", "fcs", "msg", "cfw",
               "prmq", "ct", "kde", "rni", "references"]


def load_builtin_methods() -> None:
    """Import every built-in method file so they register themselves (in the paper's order)."""
    import importlib
    import pkgutil

    others = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in PAPER_ORDER + ["base", "space"])
    for name in PAPER_ORDER + others:
        importlib.import_module(f"{__name__}.{name}")


def load_plugins(paths: list[str]) -> None:
    """Import user files (paths to .py files or module names) whose decorated methods then register."""
    import importlib
    import importlib.util
    from pathlib import Path

    from deepunlearn.errors import UserError

    for p in paths:
        if p.endswith(".py"):
            path = Path(p)
            if not path.is_file():
                raise UserError(f"Plugin file {p} does not exist; fix the path in `plugins`.")
            spec = importlib.util.spec_from_file_location(f"deepunlearn_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except SyntaxError as e:
                raise UserError(f"Plugin file {p} has a syntax error at line {e.lineno} ({e.msg}); "
                                f"fix the file.") from None
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001  the user's code: any failure to import is a bad plugin
                raise UserError(f"Plugin file {p} failed to import ({type(e).__name__}: {e}); fix the file.") from None
        else:
            try:
                importlib.import_module(p)
            except ModuleNotFoundError as e:
                raise UserError(f"Plugin module {p} cannot be imported ({e}); fix the name in `plugins`.") from None


load_builtin_methods()
