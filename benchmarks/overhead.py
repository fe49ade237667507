"""CPU-side pipeline overhead of ``compress()``: everything but the proxy's transformer layers.

On a GPU the proxy's prefill of 8k tokens takes ~20-30 ms (benchmarks/results/kernels.json), so
sentence splitting, tokenisation, window packing, budgeted selection and assembly decide whether
``compress()`` stays near a bare prefill. This benchmark isolates them on the CPU: the proxy is a
2-layer random-weight model with the real tokenizer of the Qwen preset (so every text stage
sees real token counts) and the training-free scorer reading layer 0, so the transformer costs
next to nothing and the stage timings are the pipeline's own.

``--compare-with REF`` also runs the same measurement against the code of git revision ``REF``
(checked out into a temporary worktree) in alternating subprocesses, so both sides share the
machine's conditions; the JSON holds both, side by side.

Example:
    python benchmarks/overhead.py --compare-with 63319bc --out benchmarks/results/overhead-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUERY = "Which treaty did the council sign after the winter harvest?"


def tiny_proxy(dest: Path) -> Path:
    """A 2-layer random-weight Qwen2 with the Qwen preset's real tokenizer (built once)."""
    if (dest / "model.safetensors").is_file():
        return dest
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ctxcomp.models.loader import materialise

    src = Path(materialise("qwen2.5-coder-0.5b-instruct").location)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent))
    for f in src.iterdir():
        if f.suffix in (".json", ".jinja") and f.name != "ctxcomp-source.json":
            shutil.copy(f, tmp / f.name)
    cfg = AutoConfig.from_pretrained(tmp)
    cfg.update(
        {
            "num_hidden_layers": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "layer_types": ["full_attention"] * 2,
        }
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp)
    tmp.replace(dest)
    return dest


def measure(proxy: str, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    """Median stage timings of ``compress()`` (ms) at each size, with the code importable here."""
    sys.path.insert(0, str(HERE))
    from kernels import synthetic_docs

    import ctxcomp
    from ctxcomp import CompressionConfig, Compressor

    out = []
    for n in sizes:
        # One window up to 16k tokens; beyond, the default 8k windows (the path long inputs take),
        # with the per-call input limit lifted so the 100k-token point can run at all.
        window = n + 4096 if n <= 16384 else 8192
        cfg = CompressionConfig(
            proxy_model=proxy,
            scorer="attention",
            probe_layers=(0,),
            max_proxy_tokens=window,
            max_input_chars=None,
            device="cpu",
        )
        comp = Compressor(cfg).load()
        docs = synthetic_docs(n)
        comp.compress(QUERY, docs, ratio=0.25)  # warm-up
        runs = [comp.compress(QUERY, docs, ratio=0.25) for _ in range(reps)]
        stages = {k: statistics.median(r.stats.timings[k] for r in runs) * 1e3 for k in runs[0].stats.timings}
        out.append(
            {
                "target_tokens": n,
                "original_tokens": runs[0].stats.original_tokens,
                "kept_tokens": runs[0].stats.kept_tokens,
                "budget": runs[0].stats.budget,
                "n_sentences": len(runs[0].sentences),
                "code": str(Path(ctxcomp.__file__).parent),
                "stage_ms_median": stages,
            }
        )
    return out


def _child(code_root: Path, proxy: str, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--proxy", proxy, "--reps", str(reps)]
    cmd += ["--sizes", *map(str, sizes)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"child failed for {code_root}:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (median taken)")
    ap.add_argument("--compare-with", help="git revision to measure side by side")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "overhead-cpu.json")
    ap.add_argument("--proxy", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.proxy, args.sizes, args.reps)))
        return

    from ctxcomp.models.loader import cache_dir

    bench_dir = cache_dir() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    proxy = str(tiny_proxy(bench_dir / "tiny-qwen-real-tokenizer"))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    sides: dict[str, Path] = {f"HEAD ({head.stdout.strip()}, working tree)": ROOT}
    worktree = None
    if args.compare_with:
        worktree = Path(tempfile.mkdtemp(prefix="ctxcomp-ref-"))
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), args.compare_with],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        sides[f"{args.compare_with} (reference)"] = worktree
    try:
        rounds: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in sides}
        for r in range(args.rounds):
            for name, root in list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]:
                rounds[name].append(_child(root, proxy, args.sizes, args.reps))
                print(f"round {r} {name}: done", file=sys.stderr, flush=True)
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
    result: dict[str, Any] = {
        "benchmark": "overhead-cpu",
        "what": "compress() stage timings (ms, medians) with a 2-layer random-weight proxy carrying the "
        "Qwen preset's real tokenizer; the transformer costs ~nothing, so these are the pipeline's "
        "own CPU costs (split, tokenisation + window packing inside 'probe', selection in 'prune', "
        "final assembly and exact recount in 'reorder')",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": 1},
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sides": {},
    }
    for name, rs in rounds.items():
        merged = []
        for i, rec in enumerate(rs[0]):
            stages = {
                k: statistics.median(run[i]["stage_ms_median"][k] for run in rs)
                for k in rec["stage_ms_median"]
            }
            merged.append({**rec, "stage_ms_median": stages})
        result["sides"][name] = merged
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, recs in result["sides"].items():
        for rec in recs:
            st = {k: round(v, 1) for k, v in rec["stage_ms_median"].items()}
            print(f"{name:40s} {rec['original_tokens']:>6} tok  {st}")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
