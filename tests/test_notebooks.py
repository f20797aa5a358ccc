"""Stage notebooks: the parameters contract, no logic in notebooks, and the papermill chain on tiny params."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
from pathlib import Path

import jupytext
import pytest
import yaml

from deepunlearn.render import render
from deepunlearn.stages import config_class, make_config

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


def parameters_cell(stage: str) -> str:
    nb = jupytext.read(ROOT / "notebooks" / f"{stage}.py")
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"notebooks/{stage}.py must have exactly one cell tagged parameters"
    return cells[0].source


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_parameters_are_the_config_fields(stage):
    tree = ast.parse(parameters_cell(stage))
    names = [t.id for node in tree.body for t in node.targets]  # plain `name = literal` only
    for node in tree.body:
        ast.literal_eval(node.value)  # flat literals, nothing computed
    assert all(isinstance(node, ast.Assign) for node in tree.body)
    fields = [f.name for f in dataclasses.fields(config_class(stage))]
    assert sorted(names) == sorted(fields)
    for line in parameters_cell(stage).splitlines():
        assert "#" in line and line.count("=") == 1, f"{stage}: every parameter needs a comment: {line!r}"


@pytest.mark.parametrize("stage", STAGES)
def test_notebooks_hold_no_logic(stage):
    tree = ast.parse((ROOT / "notebooks" / f"{stage}.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]


PARAM_FILES = sorted((ROOT / "params").glob("*/*.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_params_file_is_valid_for_its_stage(path):
    params = yaml.safe_load(path.read_text()) or {}
    make_config(path.parent.name, **params)  # raises on an unknown key


def test_unknown_params_key_is_an_error():
    with pytest.raises(ValueError, match="Unknown train parameter.*epoch_count"):
        make_config("train", epoch_count=3)


def test_paper_configs_follow_the_spec_recipe():
    for ds, epochs, batch in [("mnist", 50, 256), ("fashion_mnist", 50, 256), ("cifar10", 182, 256),
                              ("cifar100", 182, 256), ("utkface", 50, 128)]:
        for arch in ("resnet18", "tinyvit"):
            p = yaml.safe_load((ROOT / "params" / "train" / f"paper-{ds}-{arch}.yaml").read_text())
            assert (p["dataset"], p["arch"], p["epochs"], p["batch_size"]) == (ds, arch, epochs, batch)
            assert p["seeds"] == list(range(10))


def outputs_of(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_papermill_chain_on_tiny(tmp_path):
    store = {"store": str(tmp_path / "store")}
    trained = render("train", "tiny", root=ROOT, out_dir=tmp_path / "nb", extra={**store, "progress": True},
                     log_output=False)
    text = outputs_of(trained)
    assert "original" in text and "retrain" in text
    # progress under papermill is text (seen in the terminal and the saved notebook), not a widget
    # that the saved notebook would show at 0%
    outputs = [o for c in json.loads(trained.read_text())["cells"] for o in c.get("outputs", [])]
    bars = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
    assert "100%" in bars and "loss=" in bars and "acc=" in bars
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    unlearned = render("unlearn", "tiny", root=ROOT, out_dir=tmp_path / "nb", extra=store, log_output=False)
    text = outputs_of(unlearned)
    assert "FT" in text and "CT" in text and "Retrain" in text
    assert not list((tmp_path / "nb").glob("*.partial.ipynb"))
    # the unlearn stage reused the stored references instead of training them again
    assert len(list((tmp_path / "store" / "model").glob("*/DONE"))) == 2


def test_make_targets_of_the_readme_exist_and_demo_chains_the_five_stages():
    # `make -n` prints the commands without running them; a target lost from the Makefile fails here
    help_text = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout
    for target in ("setup", "demo", "test", "test-fast", "test-margins", "train", "sweep", "unlearn", "attack",
                   "analyze", "figures", "paper", "bench", "lint", "lab", "clean"):
        assert f"make {target} " in help_text, f"make {target} is missing"
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-B", "-o", "setup", "-o", ".venv/.setup-done",
                          "demo"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    renders = [line.split("deepunlearn.render ")[1] for line in dry.splitlines() if "deepunlearn.render " in line]
    assert renders == ["train demo", "sweep demo-all", "unlearn demo-best", "attack demo-best", "analyze demo"]
