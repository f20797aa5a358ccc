"""`make lab` for real: JupyterLab (as root here) serves notebooks/unlearn.py; a kernel runs it with a changed parameter."""

from __future__ import annotations

import socket

import pytest

from lab_check import run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_runs_the_unlearn_notebook_in_a_kernel_started_in_notebooks():
    cells = run(free_port())
    assert cells[0]["text"].endswith("/notebooks")  # where JupyterLab starts the kernel
    assert not [c["error"] for c in cells if c["error"]]
    table = cells[-1]["text"]
    for row in ("Original", "Retrain", "FT", "CT"):
        assert row in table
