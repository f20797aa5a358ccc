"""Stage notebooks: the parameters contract, no logic in notebooks, and the papermill chain on tiny params."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
from pathlib import Path

import jupytext
import pytest
import yaml

from deepunlearn import config
from deepunlearn.config import config_class
from deepunlearn.errors import UserError
from deepunlearn.render import render

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


def parameters_cell(stage: str) -> str:
    nb = jupytext.read(ROOT / "notebooks" / f"{stage}.py")
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"notebooks/{stage}.py must have exactly one cell tagged parameters"
    return cells[0].source


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_parameters_are_the_config_fields(stage):
    # the parameters cell and the config dataclass cannot drift: same names, order, defaults and types
    tree = ast.parse(parameters_cell(stage))
    assert all(isinstance(node, ast.Assign) for node in tree.body)
    names = [t.id for node in tree.body for t in node.targets]  # plain `name = literal` only
    values = {n: ast.literal_eval(node.value) for n, node in zip(names, tree.body)}  # flat literals, nothing computed
    assert names == [f.name for f in dataclasses.fields(config_class(stage))]
    assert values == config.defaults(stage)
    config.build(stage, values)  # each default has its field's type
    for line in parameters_cell(stage).splitlines():
        assert "#" in line and line.count(" = ") == 1, f"{stage}: every parameter needs a comment: {line!r}"


@pytest.mark.parametrize("stage", STAGES)
def test_notebooks_hold_no_logic(stage):
    tree = ast.parse((ROOT / "notebooks" / f"{stage}.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]


PARAM_FILES = sorted((ROOT / "params").glob("*/*.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_params_file_is_valid_for_its_stage_and_restates_no_default(path):
    stage = path.parent.name
    params = config.read(stage, path.stem)  # raises on an unknown key or a wrong type
    own = yaml.safe_load(path.read_text()) or {}  # comments only: every default
    own.pop("inherit", None)
    restated = [k for k, v in own.items() if config.defaults(stage)[k] == v]
    assert not restated, f"{path.name} restates the defaults of {restated}"
    assert set(own) <= set(params)


def test_unknown_params_key_is_an_error():
    with pytest.raises(UserError, match="unknown train parameter `epoch_count` \\(did you mean `epochs`\\?\\); the train parameters are dataset"):
        config.make_config("train", epoch_count=3)


def test_one_paper_file_per_stage_plus_the_ulira_deltas():
    papers = sorted(str(p.relative_to(ROOT / "params")) for p in (ROOT / "params").glob("*/paper*.yaml"))
    assert papers == ["analyze/paper.yaml", "attack/paper-ulira.yaml", "attack/paper.yaml",
                      "sweep/paper-ulira.yaml", "sweep/paper.yaml", "train/paper.yaml", "unlearn/paper.yaml"]


def test_the_paper_ulira_search_is_spec_g2_and_the_paper_attack_uses_it():
    from deepunlearn import search
    from deepunlearn.experiment import stage_experiment

    cfg = config.load("sweep", "paper-ulira", dataset="cifar10", arch="resnet18", device="cpu")
    assert cfg.ulira and cfg.ulira_splits == 32 and cfg.n_trials == 200 and cfg.ulira_epochs == 91
    assert cfg.methods == ["ft", "msg", "cfw", "prmq", "ct", "kde"]
    assert search.search_context(stage_experiment(cfg), cfg).e_max == 19
    attack = config.load("attack", "paper-ulira")
    assert attack.ulira_best == cfg.name and attack.ulira_methods == cfg.methods


@pytest.mark.parametrize("arch", ["resnet18", "tinyvit"])
@pytest.mark.parametrize("ds,epochs,batch,e_max", [("mnist", 50, 256, 10), ("fashion_mnist", 50, 256, 10),
                                                   ("cifar10", 182, 256, 37), ("cifar100", 182, 256, 37),
                                                   ("utkface", 50, 128, 10)])
def test_every_paper_pair_resolves_to_the_spec_recipe(ds, epochs, batch, e_max, arch):
    # spec C recipes and spec D.1 E_max come from the registry through the one paper file per stage
    from deepunlearn import search
    from deepunlearn.experiment import experiment

    for stage in ("sweep", "unlearn", "attack"):
        cfg = config.load(stage, "paper", dataset=ds, arch=arch)
        exp = experiment(cfg.profile, dataset=cfg.dataset, arch=cfg.arch)
        assert (exp.dataset, exp.arch, exp.recipe.epochs, exp.recipe.batch_size) == (ds, arch, epochs, batch)
        assert (exp.recipe.lr, exp.recipe.momentum, exp.recipe.weight_decay) == (0.1, 0.9, 5e-4)
        assert exp.seeds == list(range(10)) and exp.train.device == "cuda"
        assert search.e_max(exp.recipe.epochs) == e_max
    assert config.load("sweep", "paper").n_trials == 100 and config.load("sweep", "paper").seeds == [0, 1, 2]
    u = config.load("attack", "paper-ulira", dataset="cifar10", arch="resnet18")  # spec G
    assert (u.ulira, u.ulira_splits, u.ulira_forget_sets, u.ulira_epochs, u.ulira_seed, u.ulira_share_original,
            u.best) == (True, 64, 10, 91, 0, False, "paper")
    assert u.ulira_methods == ["ft", "msg", "cfw", "prmq", "ct", "kde"]


def outputs_of(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_papermill_chain_on_tiny(tmp_path):
    store = {"store": str(tmp_path / "store")}
    trained = render("train", "tiny", out_dir=tmp_path / "nb", extra={**store, "progress": True},
                     log_output=False)
    text = outputs_of(trained)
    assert "original" in text and "retrain" in text
    # progress under papermill is text (seen in the terminal and the saved notebook), not a widget
    # that the saved notebook would show at 0%
    outputs = [o for c in json.loads(trained.read_text())["cells"] for o in c.get("outputs", [])]
    bars = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
    assert "100%" in bars and "loss=" in bars and "acc=" in bars
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    unlearned = render("unlearn", "tiny", out_dir=tmp_path / "nb", extra=store, log_output=False)
    text = outputs_of(unlearned)
    assert "FT" in text and "CT" in text and "Retrain" in text
    assert not list((tmp_path / "nb").glob("*.partial.ipynb"))
    # the unlearn stage reused the stored references instead of training them again
    assert len(list((tmp_path / "store" / "model").glob("*/DONE"))) == 2


def test_make_targets_of_the_readme_exist_and_demo_chains_the_five_stages():
    # `make -n` prints the commands without running them; a target lost from the Makefile fails here
    help_text = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout
    for target in ("setup", "demo", "study", "test", "test-fast", "test-margins", "train", "sweep", "unlearn", "attack",
                   "analyze", "figures", "paper", "bench", "lint", "lab", "clean"):
        assert f"make {target} " in help_text, f"make {target} is missing"
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-B", "-o", "setup", "-o", ".venv/.setup-done",
                          "demo"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    renders = [r.strip() for r in re.findall(r"deepunlearn\.cli run ([^;&\n]+)", dry)]
    # the sweep and the attack: a second one-thread worker beside the render (nothing they time makes a ratio)
    assert renders == ["train demo", "sweep demo --worker 1", "sweep demo", "unlearn demo", "attack demo --worker 1",
                       "attack demo", "analyze demo"]
    assert dry.count("OMP_NUM_THREADS=1") == 4


def test_make_study_runs_both_replicates_and_times_what_makes_rtes_alone():
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-B", "-o", "setup", "-o", ".venv/.setup-done",
                          "study"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    renders = [r.strip() for r in re.findall(r"deepunlearn\.cli run ([^;&\n]+)", dry)]
    assert renders == ["train study", "sweep study-r1", "sweep study", "unlearn study", "unlearn study-r1",
                       "attack study", "attack study-r1", "analyze study"]
    sweeps = next(line for line in dry.splitlines() if "sweep study-r1" in line)
    assert sweeps.count("OMP_NUM_THREADS=1") == 2 and "&" in sweeps  # side by side, one thread each
    assert all("OMP_NUM_THREADS" not in line for line in dry.splitlines() if " run unlearn" in line or " run train" in line)


def test_make_paper_dry_run_prints_every_render_of_two_pairs():
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-B", "-o", "setup", "-o", ".venv/.setup-done",
                          "paper", "DATASETS=mnist cifar10", "ARCHS=resnet18"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.replace("\\\n", " ")
    runs = [" ".join(line.split("deepunlearn.cli run ")[1].split()) for line in dry.splitlines()
            if "deepunlearn.cli run " in line]
    pairs = [("mnist", "resnet18"), ("cifar10", "resnet18")]
    expected = [f"{s} {'paper-ulira' if (s, d) == ('attack', 'cifar10') else 'paper'} --set dataset={d} "
                f"--set arch={a} --as paper-{d}-{a}" for d, a in pairs for s in ("train", "sweep", "unlearn", "attack")]
    # spec G.2: the U-LiRA methods' own search on the shadows, after CIFAR-10's train and before its attack
    ulira_sweep = "sweep paper-ulira --set dataset=cifar10 --set arch=resnet18 --as paper-ulira-cifar10-resnet18"
    expected.insert(expected.index(next(e for e in expected if e.startswith("attack paper-ulira"))), ulira_sweep)
    assert runs == expected + ["analyze paper --set 'attack=[paper@mnist/resnet18,paper-ulira@cifar10/resnet18]'"]
