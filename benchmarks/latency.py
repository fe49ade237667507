"""Latency of compress() against a bare SDPA prefill and the eager output_attentions route.

For each offline preset and context size (~1k/2k/4k proxy tokens of real NQ passages) it runs,
each in a fresh subprocess so peak RSS is per method:

(a) ``compress()`` wall time (probe stops after the deepest probe layer; no logits);
(b) a bare SDPA prefill of the same prompt through ALL layers (backbone, no LM head);
(c) the eager route: the model with eager attention and ``output_attentions=True``, full forward
    with logits. Holding every layer's ``n x n`` probabilities would need ~22 GB for the Qwen preset
    at 4k tokens (more than this machine has), so a hook reduces each layer's probabilities to the
    probe rows as they are produced and drops them: the eager route at its most frugal.

Usage: python -m benchmarks.latency [--sizes 1000 2000 4000 8000] [--presets ...] [--repeats 3]
Writes benchmarks/results/latency.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.nqdata import DEFAULT_DATA

#: Targets of the speed issue: compress <= 0.8x a bare full-depth prefill at every size, >= 3x
#: faster than the eager output_attentions route at 4k.
TARGET_OVER_PREFILL = 0.8
TARGET_EAGER_AT_4K = 3.0


def _docs_for(tokens: int, tok) -> list[str]:
    out: list[str] = []
    total = 0
    with open(DEFAULT_DATA, encoding="utf-8") as fh:
        for line in fh:
            c = json.loads(line)["ctxs"][0]
            text = f"{c['title']}. {c['text']}"
            n = len(tok(text, add_special_tokens=False)["input_ids"])
            if total + n > tokens:
                break
            out.append(text)
            total += n
    return out


def worker(preset: str, size: int, method: str, repeats: int) -> dict:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    from ctxcomp import CompressionConfig, Compressor

    # the default scorer; one proxy window even at 8k (the default window is 8192 tokens with the question)
    comp = Compressor(CompressionConfig(proxy_model=preset, max_proxy_tokens=max(8192, size + 1024))).load()
    tok = comp.proxy.tokenizer
    docs = _docs_for(size, tok)
    question = "who got the first nobel prize in physics"
    from ctxcomp.compressors.probe import build_prompt

    cands = comp.split(docs)
    units = comp.prober(cands).windows(question)
    assert len(units) == 1
    prompt, _ = build_prompt(question, units[0], cands.docs, comp.template, focus=False)
    ids = torch.tensor([tok(prompt)["input_ids"]])
    model = comp.proxy.model
    if method == "eager":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            comp.proxy.source.location, attn_implementation="eager", dtype=torch.float32
        ).eval()

        def keep_probe_rows(module, args, output):
            attn_out, weights = output[0], output[1]
            if weights is not None:
                _ = weights[..., -1:, :].sum(-1)  # the probe's reduction of the last row
            return (attn_out, None, *output[2:])

        for layer in model.model.layers:
            layer.self_attn.register_forward_hook(keep_probe_rows)

    def run() -> None:
        if method == "compress":
            comp.compress(question, docs, ratio=0.2)
        elif method == "sdpa_prefill":
            with torch.inference_mode():
                comp.proxy.model.get_decoder()(input_ids=ids, use_cache=False)
        else:
            with torch.inference_mode():
                model(input_ids=ids, output_attentions=True, use_cache=False)

    # Warm-up on a short prompt (allocator, kernels, tokenizer caches) without paying a full run.
    full_ids, full_docs = ids, docs
    ids, docs = ids[:, :128], docs[:1]
    run()
    ids, docs = full_ids, full_docs
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "preset": preset,
        "target_tokens": size,
        "prompt_tokens": int(ids.shape[1]),
        "method": method,
        "probe_layers": list(getattr(comp.scorer, "layers", ())),
        "median_s": times[len(times) // 2],
        "times_s": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    ap.add_argument("--presets", nargs="+", default=["qwen2.5-coder-0.5b-instruct", "gemma-3-270m"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/latency.json")
    ap.add_argument("--eager-max", type=int, default=4000, help="largest size the eager route runs at")
    ap.add_argument("--worker", nargs=3, metavar=("PRESET", "SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        preset, size, method = args.worker
        print(json.dumps(worker(preset, int(size), method, args.repeats)))
        return
    rows = []
    for preset in args.presets:
        for size in args.sizes:
            for method in ("compress", "sdpa_prefill", "eager"):
                if method == "eager" and size > args.eager_max:
                    continue
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.latency",
                    "--repeats",
                    str(args.repeats),
                    "--worker",
                    preset,
                    str(size),
                    method,
                ]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    rows.append(
                        {
                            "preset": preset,
                            "target_tokens": size,
                            "method": method,
                            "error": res.stderr[-2000:],
                        }
                    )
                    print(f"{preset} {size} {method}: FAILED", file=sys.stderr)
                    continue
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{preset} n={row['prompt_tokens']} {method}: {row['median_s']:.3f}s "
                    f"rss={row['peak_rss_mb']:.0f}MB",
                    file=sys.stderr,
                    flush=True,
                )
    summary = []
    for preset in args.presets:
        for size in args.sizes:
            by = {
                r["method"]: r
                for r in rows
                if r["preset"] == preset and r["target_tokens"] == size and "error" not in r
            }
            if {"compress", "sdpa_prefill"} <= set(by):
                ratio = by["compress"]["median_s"] / by["sdpa_prefill"]["median_s"]
                entry = {
                    "preset": preset,
                    "prompt_tokens": by["compress"]["prompt_tokens"],
                    "compress_over_prefill": ratio,
                    "target_compress_over_prefill": TARGET_OVER_PREFILL,
                    "meets_prefill_target": ratio <= TARGET_OVER_PREFILL,
                    "peak_rss_mb": {m: by[m]["peak_rss_mb"] for m in by},
                }
                if "eager" in by:
                    speedup = by["eager"]["median_s"] / by["compress"]["median_s"]
                    entry["eager_over_compress"] = speedup
                    if size == 4000:
                        entry["meets_eager_target_at_4k"] = speedup >= TARGET_EAGER_AT_4K
                summary.append(entry)
    import platform

    out = {
        "benchmark": "latency",
        "machine": {
            "cpu_count": __import__("os").cpu_count(),
            "platform": platform.platform(),
            "torch": __import__("torch").__version__,
        },
        "note": "CPU fp32; compress() includes splitting, tokenising, pruning; the prefill is the backbone "
        "through all layers without the LM head; each row in its own process (peak RSS per method).",
        "rows": rows,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for s in summary:
        print(json.dumps(s), file=sys.stderr)


if __name__ == "__main__":
    main()
