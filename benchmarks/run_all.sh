#!/usr/bin/env bash
# Every figure of the foundation issue, in one go (about an hour on a 2-core CPU). Results are appended
# to benchmarks/out/results.jsonl; the tables are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
$PY benchmarks/train.py cnn --backends tensorflow,torch,jax --epochs 3
$PY benchmarks/train.py overhead --backend tensorflow --epochs 1 --pairs 2
$PY benchmarks/train.py list --repeat 20
$PY benchmarks/train.py mlp --backends tensorflow
