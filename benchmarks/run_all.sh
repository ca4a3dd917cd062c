#!/usr/bin/env bash
# Every figure of the foundation issue, in one go (about two hours on a 2-core CPU: 3 seeds × 3 backends). Results are appended
# to benchmarks/out/results.jsonl; the tables are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
$PY benchmarks/train.py cnn --backends tensorflow,torch,jax --epochs 3 --seeds 0,1,2
$PY benchmarks/train.py overhead --backend tensorflow --epochs 1 --pairs 3
$PY benchmarks/train.py list --repeat 20
$PY benchmarks/train.py mlp --backends tensorflow
