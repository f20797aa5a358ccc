"""Hyperparameter domains, search spaces that cannot be sampled and plugins that do not import: one sentence each."""

from __future__ import annotations

import dataclasses

import pytest

from deepunlearn.errors import UserError
from deepunlearn.methods import SearchContext, get_method, list_methods, load_plugins, register_method
from deepunlearn.methods.base import _METHODS

BUILTIN = list_methods(include_references=False)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_field_has_a_domain_that_holds_its_default_and_its_search_space(name):
    spec = get_method(name)
    assert [f.name for f in dataclasses.fields(spec.hparams) if f.name not in spec.domains] == []
    spec.make_hp()  # the defaults lie in their domains
    for ctx in (SearchContext(e_max=1), SearchContext(e_max=10, dataset="utkface")):
        spec.check_space(ctx)


@pytest.mark.parametrize(("method", "hp", "message"), [
    ("ft", {"epochs": -2}, "Method 'ft': hyperparameter epochs=-2 is outside its domain ≥ 1; set epochs to a value ≥ 1."),
    ("ft", {"epochs": 0}, "epochs=0 is outside its domain ≥ 1"),
    ("ft", {"lr": -1}, "Method 'ft': hyperparameter lr=-1 is outside its domain > 0; set lr to a value > 0."),
    ("ft", {"lr": 0}, "lr=0 is outside its domain > 0"),
    ("ft", {"batch_size": 0}, "batch_size=0 is outside its domain ≥ 1"),
    ("ngplus", {"alpha": 1.5}, ("Method 'ngplus': hyperparameter alpha=1.5 is outside its domain [0, 1]; "
                                "set alpha to a value in [0, 1].")),
    ("scrub", {"kd_temperature": 0.0}, "kd_temperature=0.0 is outside its domain > 0"),
    ("ft", {"momentum": 1.0}, "momentum=1.0 is outside its domain [0, 1)"),
    ("ft", {"lr": float("nan")}, "lr=nan is outside"),
    ("ft", {"epochs": "three"}, "Method 'ft': epochs='three' is not a number; give an integer."),
    ("rni", {"fine_lr": [0.1, -0.1]}, "fine_lr=[0.1, -0.1] is outside its domain > 0"),
])
def test_a_value_outside_its_domain_is_one_sentence(method, hp, message):
    with pytest.raises(UserError) as e:
        get_method(method).make_hp(**hp)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_zero_epochs_is_allowed_where_it_skips_a_phase():
    assert get_method("kde").make_hp(epochs=0, retain_epochs=0).epochs == 0
    assert get_method("rni").make_hp(fine_lr=[0.1, 0.01]).fine_lr == [0.1, 0.01]


@dataclasses.dataclass
class _Params:
    epochs: int = 1
    lr: float = 0.1


@pytest.fixture
def temporary_method():
    """Register methods named 'tmp-*' for one test and forget them afterwards."""
    yield
    for name in [n for n in _METHODS if n.startswith("tmp-")]:
        del _METHODS[name]


@pytest.mark.parametrize(("space", "message"), [
    (lambda trial, ctx: {"lr": trial.suggest_float("lr", 1e-1, 1e-5, log=True)},
     "The search space of method 'tmp-space' cannot be sampled (ValueError: "),
    (lambda trial, ctx: {"lr": trial.suggest_categorical("lr", [])}, "cannot be sampled (ValueError: "),
    (lambda trial, ctx: {"lr": trial.suggest_float("lr", -1.0, 0.0)}, ("The search space of method 'tmp-space' "
     "proposes values its method rejects: Method 'tmp-space': hyperparameter lr=-0.5 is outside its domain > 0")),
    (lambda trial, ctx: {"rate": trial.suggest_float("lr", 0.1, 0.2)}, "has no hyperparameter(s) rate"),
    (lambda trial, ctx: 1 / 0, "cannot be sampled (ZeroDivisionError: division by zero); fix its space function."),
])
def test_a_search_space_that_cannot_be_sampled_is_one_sentence(temporary_method, space, message):
    register_method("tmp-space", display="T", hparams=_Params, space=space)(lambda model, data, hp: model)
    with pytest.raises(UserError) as e:
        get_method("tmp-space").check_space(SearchContext())
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_plugin_without_declared_domains_gets_the_conventional_ones(temporary_method):
    register_method("tmp-plain", display="T", hparams=_Params)(lambda model, data, hp: model)
    with pytest.raises(UserError, match="epochs=-2 is outside its domain ≥ 1"):
        get_method("tmp-plain").make_hp(epochs=-2)


@pytest.mark.parametrize(("source", "message"), [
    ("def broken(:\n    pass\n", "has a syntax error at line 1 ("),
    ("import no_such_module_anywhere\n", "failed to import (ModuleNotFoundError: No module named"),
])
def test_a_plugin_that_does_not_import_is_one_sentence(tmp_path, source, message):
    path = tmp_path / "mine.py"
    path.write_text(source)
    with pytest.raises(UserError) as e:
        load_plugins([str(path)])
    assert str(e.value).startswith(f"Plugin file {path} ") and message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).endswith("fix the file.")
