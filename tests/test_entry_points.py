"""The three ways of use off the tested path: a kernel started in notebooks/, a non-default store, bad params files.

Paths are anchored at the project root whatever the working directory (a Jupyter kernel starts in
notebooks/); the sweep's best.yaml is written and read by one function beside whichever store is
used; a bad params file stops make, render and the command line alike with one sentence.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import papermill
import pytest
import yaml

from deepunlearn import cli, config, paths
from deepunlearn.errors import UserError
from deepunlearn.render import render
from deepunlearn.stages import sweep, unlearn

ROOT = Path(__file__).resolve().parents[1]


def test_paths_are_anchored_at_the_root_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPUNLEARN_ROOT", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert paths.root() == ROOT and paths.resolve("outputs/store") == ROOT / "outputs" / "store"
    assert paths.params_file("unlearn", "tiny") == ROOT / "params" / "unlearn" / "tiny.yaml"
    assert paths.resolve(tmp_path / "x") == tmp_path / "x"  # an absolute path stays as given
    assert config.load("unlearn", "tiny").profile == "tiny"  # found from notebooks/, as a kernel would
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(tmp_path))
    assert paths.root() == tmp_path and paths.best_file("outputs/store", "s", "d", "a") == (
        tmp_path / "outputs" / "sweeps" / "s" / "d-a" / "best.yaml")


@pytest.mark.slow
def test_notebooks_run_from_notebooks_as_jupyterlab_starts_a_kernel_and_write_to_the_projects_outputs(tmp_path):
    # papermill itself, not our render: the kernel's working directory is notebooks/, no DEEPUNLEARN_ROOT
    env = {k: v for k, v in os.environ.items() if k != "DEEPUNLEARN_ROOT"}
    script = f"""
import jupytext, papermill
for stage, params in (("train", {{"dataset": "digits", "arch": "tinycnn", "epochs": 1, "batch_size": 64,
                                  "device": "cpu", "progress": False}}),
                      ("unlearn", {{"profile": "tiny", "methods": ["ft"], "hparams": {{"ft": {{"epochs": 1}}}},
                                    "device": "cpu", "progress": False}})):
    jupytext.write(jupytext.read("{ROOT}/notebooks/" + stage + ".py"), "{tmp_path}/" + stage + ".ipynb")
    papermill.execute_notebook("{tmp_path}/" + stage + ".ipynb", "{tmp_path}/" + stage + ".out.ipynb",
                               parameters=params, cwd="{ROOT}/notebooks", progress_bar=False)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT / "notebooks", env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (ROOT / "notebooks" / "outputs").exists()  # nothing hangs on the working directory
    models = [p.name for p in (ROOT / "outputs" / "store" / "model").glob("digits-tinycnn-*-s0*")]
    assert any("original" in m for m in models) and any("retrain" in m for m in models)
    assert list((ROOT / "outputs" / "store" / "unlearned").glob("digits-tinycnn-ft-s0*/DONE"))
    table = jupytext.read(tmp_path / "unlearn.out.ipynb", fmt="ipynb").cells[-1].outputs[0]["data"]["text/plain"]
    assert "FT" in table and "Retrain" in table
    assert papermill  # the package the test drives


@pytest.mark.slow
def test_sweep_then_unlearn_with_best_on_a_non_default_store(tmp_path):
    store = tmp_path / "shared" / "store"
    cfg = config.load("sweep", "tiny", n_trials=2, store=str(store), name="elsewhere")
    summary = sweep.run(sweep.context(cfg))
    best = tmp_path / "shared" / "sweeps" / "elsewhere" / "digits-tinycnn" / "best.yaml"
    assert best.is_file() and best == paths.best_file(str(store), "elsewhere", "digits", "tinycnn")
    chosen = yaml.safe_load(best.read_text())["ft"]
    assert (chosen["n_trials"], chosen["seeds"], summary.loc[0, "trials"]) == (2, [0], 2)
    table = unlearn.run(config.load("unlearn", "tiny", methods=["ft"], hparams={}, best="elsewhere",
                                    store=str(store)))
    assert "FT" in set(table["method"])
    stored = list((store / "unlearned").glob("digits-tinycnn-ft-s0*/meta.json"))
    assert len(stored) == 1
    assert yaml.safe_load(stored[0].read_text())["hp"]["lr"] == pytest.approx(chosen["params"]["lr"])


BAD = {  # a user's own params file for the unlearn stage, and the sentence it must give
    "unknown key": ("profile: tiny\nmethod: [ft]\n",
                    "unknown unlearn parameter `method` (did you mean `methods`?); the unlearn parameters are profile"),
    "wrong type": ("profile: tiny\nseeds: ten\n", "`seeds` must be a list of integers or null, not 'ten'; fix its value."),
    "empty file": ("", "is empty; write one `key: value` line per parameter that differs from the defaults"),
    "not a mapping": ("- ft\n- ct\n", "holds a list, not a `key: value` mapping; write one parameter per line."),
}


def project(tmp_path: Path, text: str) -> Path:
    """A copy of the project (Makefile, notebooks, tiny params) with params/unlearn/bad.yaml holding `text`."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)  # copy2 keeps pyproject older than the setup stamp
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copytree(ROOT / "params", tmp_path / "params")
    (tmp_path / "params" / "unlearn" / "bad.yaml").write_text(text)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_params_file_is_one_sentence_through_the_command_line_and_render(case, tmp_path, monkeypatch, capsys):
    text, sentence = BAD[case]
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(project(tmp_path, text)))
    assert cli.main(["run", "unlearn", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and sentence in err and "Traceback" not in err
    assert "params/unlearn/bad.yaml" in err or "--set" in err
    with pytest.raises(UserError, match="bad.yaml"):
        render("unlearn", "bad")
    assert not (tmp_path / "outputs").exists()  # no store, no notebook, nothing


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_params_file_is_one_sentence_through_make(case, tmp_path):
    text, sentence = BAD[case]
    root = project(tmp_path, text)
    out = subprocess.run(["make", "--no-print-directory", "unlearn", "CONFIG=bad"], cwd=root, capture_output=True,
                         text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert len(errors) == 1 and sentence in errors[0] and str(root / "params" / "unlearn" / "bad.yaml") in errors[0]
    assert not (root / "outputs").exists()


def test_a_misspelt_config_name_names_the_configs_there_are(capsys):
    # `make figures CONFIG=dmeo` used to end in a raw FileNotFoundError
    assert cli.main(["run", "analyze", "dmeo", "--set", "from_results=true", "--as", "dmeo-figures"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: No params file {ROOT / 'params' / 'analyze' / 'dmeo.yaml'}; choose an analyze config "
                   f"from demo, paper, preview, study, tiny.\n")
