#!/usr/bin/env bash
# GPU check (< 5 minutes on one CUDA device): the same throughput benchmark on the GPU, where the
# data path decides, plus one tiny train → unlearn chain. Run from the repo root after `make setup`.
set -euo pipefail
PY=${PY:-.venv/bin/python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
timeout 240 $PY bench/train_throughput.py --device cuda --arch resnet18 --images 16384 --epochs 3
timeout 120 $PY bench/train_throughput.py --device cuda --arch tinyvit --images 4096 --epochs 1
