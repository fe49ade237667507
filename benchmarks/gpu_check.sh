#!/usr/bin/env bash
# One prepared GPU check for a lent device (an H200 here): CUDA tests of the probe kernels, then
# benchmarks/kernels.py. Everything it needs travels with the working tree:
#   .whl/        wheels the device image lacks (pydantic & co, the transformers version we test with)
#   .gpu/qwen-shape/    config + tokenizer of the default proxy (no weights: random bf16 ones are used)
#   .gpu/minilm-shape/  all-MiniLM-L6-v2 without its weights (random ones are used)
# Prepare them with `make gpu-prep`; run with the device tool:
#   command: bash benchmarks/gpu_check.sh     carry: [".whl", ".gpu"]
# Results land in $OUT (kernels.json, logs); copy kernels.json to benchmarks/results/ and commit it.
set -uo pipefail
OUT=${OUT:-/tmp/ctxcomp-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=python3
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv | tee "$OUT/nvidia-smi.txt"
$PY -c "import torch, triton, transformers, pydantic; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'pydantic', pydantic.__version__)" \
  | tee -a "$OUT/nvidia-smi.txt"

echo "== CUDA tests: probe kernels (compiled Triton vs reference) and the probe against eager attention"
timeout 240 $PY -m pytest -q -p no:cacheprovider -o addopts="--strict-markers" --timeout=120 \
  tests/kernels tests/compressors/test_probe_oracle.py 2>&1 | tee "$OUT/pytest-gpu.log" | tail -25
echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/pytest-gpu.log"

echo "== benchmarks/kernels.py"
timeout 300 $PY benchmarks/kernels.py --out "$OUT/kernels.json" \
  --shape-dir .gpu/qwen-shape --embedder-shape-dir .gpu/minilm-shape > "$OUT/kernels.log" 2>&1
echo "kernels.py exit: $?"
grep -E "^\[(kernel|prefill)\]" "$OUT/kernels.log" | cut -c1-220
grep -E "^\[compress\]" "$OUT/kernels.log" | sed -E "s/'compress_ms_all'[^]]*\], //" | cut -c1-420
tail -3 "$OUT/kernels.log"
$PY - "$OUT/kernels.json" <<'EOF' || true
import json, sys
print(json.dumps(json.load(open(sys.argv[1])).get("targets"), indent=1))
EOF
nvidia-smi --query-gpu=clocks.sm,clocks.mem,memory.used --format=csv,noheader | tee -a "$OUT/nvidia-smi.txt"
