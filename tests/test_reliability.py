"""Bad input through the real entry points: one line of error, exit status 2, the store as it was.

A tiny project's store (digits, tinycnn, 1 epoch: data, splits, Original and Retrained models) is built
once by the train stage; each case copies that store, damages something or passes a bad parameter, runs the command line again and
compares the store's listing (paths, sizes, sha256) before and after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepunlearn.stages import attack, make_config, train
from deepunlearn.stages import sweep as sweep_stage

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "dataset: digits\narch: tinycnn\nseeds: [0]\nsubset: 300\nepochs: 1\nbatch_size: 64\ndevice: cpu\nprogress: false\n"
ATTACK = "train: t\nmethods: [ft]\nhparams: {ft: {epochs: 1, batch_size: 64}}\ndevice: cpu\nprogress: false\n"


def listing(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: relative path -> (size, sha256)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with tiny train/attack params and a store the train stage filled."""
    root = tmp_path_factory.mktemp("project")
    (root / "params" / "train").mkdir(parents=True)
    (root / "params" / "attack").mkdir()
    (root / "params" / "train" / "t.yaml").write_text(TRAIN)
    (root / "params" / "attack" / "t.yaml").write_text(ATTACK)
    cwd = os.getcwd()
    os.chdir(root)  # params/ are found from the working directory, as make and the notebooks run them
    try:
        train.run(make_config("train", **{**yaml.safe_load(TRAIN), "store": "outputs/store"}))
    finally:
        os.chdir(cwd)
    return root


def run_fails(cli, argv: list[str], store: Path, capsys) -> str:
    """Run an in-process command line that must fail cleanly; returns its one error line."""
    capsys.readouterr()
    before = listing(store)
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert listing(store) == before
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def store(project, tmp_path, monkeypatch) -> Path:
    """A private copy of the project's store, the project as working directory."""
    copy = tmp_path / "store"
    shutil.copytree(project / "outputs" / "store", copy)
    monkeypatch.chdir(project)
    return copy


def only(store: Path, pattern: str) -> Path:
    (path,) = store.glob(pattern)
    return path


def garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # same size, different bytes
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 3)


@pytest.mark.parametrize("damage", [garble, truncate])
@pytest.mark.parametrize("pattern", ["model/*-retrain-*/weights.pt", "dataset/*/images.npy"])
def test_a_damaged_stored_file_stops_with_one_sentence(store, capsys, damage, pattern):
    target = only(store, pattern)
    damage(target)
    # the attack stage reads the data, then the Retrained model first
    err = run_fails(attack.main, ["params/attack/t.yaml", "--set", f"store={store}"], store, capsys)
    assert f"Stored artifact {target.parent} is damaged ({target.name} " in err
    assert "run `deepunlearn store repair" in err


@pytest.mark.parametrize(("hp", "expected"), [
    ("{ft: {epochs: -2}}", "Method 'ft': hyperparameter epochs=-2 is outside its domain ≥ 1"),
    ("{ft: {epochs: 0}}", "hyperparameter epochs=0 is outside its domain ≥ 1"),
    ("{ft: {lr: -1}}", "Method 'ft': hyperparameter lr=-1 is outside its domain > 0"),
    ("{ft: {lr: 0}}", "hyperparameter lr=0 is outside its domain > 0"),
    ("{ft: {batch_size: 0}}", "Method 'ft': hyperparameter batch_size=0 is outside its domain ≥ 1"),
    ("{ft: {epoch: 1}}", "Method 'ft' has no hyperparameter(s) epoch"),
])
def test_a_bad_hyperparameter_stops_before_any_work(store, capsys, hp, expected):
    # a fresh hyperparameter value means a model not in the store: nothing may be built for it
    err = run_fails(attack.main, ["params/attack/t.yaml", "--set", f"store={store}", "--set", f"hparams={hp}"],
                    store, capsys)
    assert expected in err


@pytest.mark.parametrize(("sets", "expected"), [
    (["methods=[nope]"], "error: Unknown method 'nope'; choose one of "),
    (["train: t", "plugins=[broken.py]"], "error: Plugin file broken.py has a syntax error at line 1"),
    (["methods=[ft]", "best=nosweep"], "error: No sweep results at outputs/sweeps/nosweep/best.yaml"),
    (["ulira_statistic=median", "ulira=true"], "error: ulira_statistic='median'; choose one of"),
])
def test_a_bad_attack_parameter_is_one_sentence(store, capsys, sets, expected):
    (store.parent / "broken.py").write_text("def broken(:\n")
    argv = ["params/attack/t.yaml", "--set", f"store={store}"]
    for s in sets:
        if "=" in s:
            key, _, value = s.partition("=")
            value = str(store.parent / value.strip("[]")) if key == "plugins" else value
            argv += ["--set", f"{key}=[{value}]" if key == "plugins" else f"{key}={value}"]
    err = run_fails(attack.main, argv, store, capsys)
    assert err.startswith(expected.replace("broken.py", str(store.parent / "broken.py")))


@pytest.mark.parametrize(("train", "expected"), [
    ("arch: nonet\n", "error: Unknown model 'nonet'; choose one of "),
    ("dataset: nodata\n", "error: Unknown dataset 'nodata'; choose one of "),
    ("epochs: 0\n", "error: Train parameter epochs=0 must be an integer ≥ 1"),
])
def test_a_bad_train_parameter_stops_every_stage_before_any_work(store, capsys, train, expected):
    (Path("params") / "train" / "bad.yaml").write_text(TRAIN + train)
    try:
        err = run_fails(attack.main, ["params/attack/t.yaml", "--set", f"store={store}", "--set", "train=bad"],
                        store, capsys)
        assert err.startswith(expected)
        (Path("params") / "sweep").mkdir(exist_ok=True)
        (Path("params") / "sweep" / "bad.yaml").write_text(f"train: bad\nstore: {store}\ndevice: cpu\n")
        err = run_fails(sweep_stage.main, ["bad"], store, capsys)
        assert err.startswith(expected)
    finally:
        (Path("params") / "train" / "bad.yaml").unlink()


def test_a_sweep_whose_space_cannot_be_sampled_stops_before_any_trial(store, capsys, tmp_path):
    plugin = tmp_path / "badspace.py"
    plugin.write_text(
        "from dataclasses import dataclass\nfrom deepunlearn.methods import register_method\n\n\n"
        "@dataclass\nclass P:\n    lr: float = 0.1\n\n\n"
        "def space(trial, ctx):\n    return {'lr': trial.suggest_float('lr', 1.0, 0.1, log=True)}\n\n\n"
        "@register_method('badspace', display='B', hparams=P, space=space)\n"
        "def badspace(model, data, hp):\n    return model\n")
    (Path("params") / "sweep").mkdir(exist_ok=True)
    (Path("params") / "sweep" / "badspace.yaml").write_text(
        f"name: badspace\ntrain: t\nmethods: [badspace]\nplugins: [{plugin}]\nstore: {store}\ndevice: cpu\n")
    err = run_fails(sweep_stage.main, ["badspace"], store, capsys)
    assert err.startswith("error: The search space of method 'badspace' cannot be sampled (ValueError: ")
    assert not (store.parent / "sweeps").exists()  # no study was created


METHODS = "ft, ga, srl, ngplus, bt, scrub, salun, ff, iu, cfk, euk, fcs, msg, cfw, prmq, ct, kde, rni, original, retrain"
MAKE_CASES = {  # an unknown dataset, arch (train stage) and method (unlearn stage), as a user types them
    "dataset": ("train", TRAIN.replace("digits", "nodata"),
                "Unknown dataset 'nodata'; choose one of cifar10, cifar100, digits, fashion_mnist, mnist, utkface"),
    "arch": ("train", TRAIN.replace("tinycnn", "noarch"),
             "Unknown model 'noarch'; choose one of resnet18, smallresnet, tinycnn, tinyvit"),
    "method": ("unlearn", "train: t\nmethods: [nomethod]\ndevice: cpu\nprogress: false\n",
               f"Unknown method 'nomethod'; choose one of {METHODS}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MAKE_CASES))
def test_an_error_inside_a_rendered_notebook_is_its_one_sentence_through_make(case, tmp_path):
    stage, params, sentence = MAKE_CASES[case]
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)  # copy2 keeps pyproject older than the setup stamp
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    for folder in ("train", stage):
        (tmp_path / "params" / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "params" / "train" / "t.yaml").write_text(TRAIN)
    (tmp_path / "params" / stage / "bad.yaml").write_text(params)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    out = subprocess.run(["make", "--no-print-directory", stage, "CONFIG=bad"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert errors == [f"error: {sentence}; details in outputs/nb/{stage}/bad.failed.ipynb."]
    assert sorted(p.name for p in (tmp_path / "outputs" / "nb" / stage).iterdir()) == ["bad.failed.ipynb"]
    assert not (tmp_path / "outputs" / "store").exists()