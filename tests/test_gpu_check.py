"""`make gpu-check`: one sentence where there is no CUDA device; the same chain passes on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: make gpu-check runs for real there")
def test_without_cuda_it_stops_at_once_with_one_sentence():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("gpu-check: no CUDA device here") and out.stderr.count("\n") == 1


@pytest.mark.slow
def test_the_chain_passes_on_the_cpu_every_method_included():
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--skip-throughput", "--archs", "tinycnn"],
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(lines) == 1 + 2 + 1 + 18 + 3 and all(line.startswith("PASS") for line in lines)
    assert out.stdout.rstrip().endswith("gpu-check: 25 passed, 0 failed")
