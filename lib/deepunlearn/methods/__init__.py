"""Unlearning methods: a registry (timm style), one file per method.

A method is `fn(model, data, hp) -> model` registered with `@register_method`. It receives the
Original model (already a private copy, in train mode) and a DeviceData holding retain, forget
and val; it must be deterministic under the run seed (`rng(data)`, `torch` global RNG) and do all
of its work inside the call, because the whole call is timed (spec D.0, E.4).
"""

from deepunlearn.methods.base import (MethodSpec, SearchContext, create_method, get_method, list_methods,
                                      register_method, rng, run_method)

__all__ = ["MethodSpec", "SearchContext", "create_method", "get_method", "list_methods", "register_method", "rng",
           "run_method", "load_builtin_methods"]


def load_builtin_methods() -> None:
    """Import every built-in method file so they register themselves."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "space"):
            importlib.import_module(f"{__name__}.{mod.name}")


load_builtin_methods()
