"""Positional bias of a reader LLM on NQ, and what each reorderer does about it.

Reader: an offline preset on CPU (``qwen2.5-coder-0.5b-instruct`` by default), or any model spec on a
GPU. Prompts use :data:`ctxcomp.compressors.reader.READER_TEMPLATE` (the layout the shipped
position profiles were calibrated with). Reader accuracy = greedy decoding of at most 12 new tokens
(stopping at a newline), correct when an answer string is in the output (normalised substring,
``benchmarks.nqdata.has_answer``). A smoother second metric: the mean per-token log-probability of
the first gold answer string after ``Answer:``.

Parts, all on the evaluation split (questions never used for calibration or probe training):

(a) the U-curve: the gold passage placed at each slot of 10 (and some slots of 20) documents, the
    distractors (hard, by MiniLM similarity) in retrieval order; no reordering. Prompts of one
    question share their prefix, so a KV cache cropped to the common prefix is reused.
(b) reorderers: input = retrieval order with the gold at a seeded random slot (10 documents);
    relevance = the pipeline's sentence scores (``Compressor.score``, scorer ``attention``), max per
    document; each reorderer's order is read by the reader.
(b2) ``u_shape`` and ``attnrank`` with the gold at EVERY input slot of (a) (the relevance scores
    are recomputed for each input order), for the worst-slot-after-reordering target.
(c) correlation (Pearson, Spearman over slots) between the reader's shipped attention profile and
    the accuracy / log-probability curves of (a).

Questions are processed one at a time, (a) at 10 documents then (b), and no new question starts
after 75% of ``--budget-min`` minutes; then (a) at 20 documents for up to ``--n20`` questions until
the budget. The sample is whatever fitted (the stopping rule ignores outcomes); every count is in
the JSON. Results are cached in ``--cache`` (JSONL) so a rerun resumes.

Usage:
    python -m benchmarks.position --out benchmarks/results/position.json \\
        --plot benchmarks/results/position.png [--n 12] [--n20 4] [--budget-min 45]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.nqdata import has_answer, load_examples

RESULTS = Path(__file__).resolve().parent / "results"
REORDERERS_B = ("none", "u_shape", "attnrank", "attention_sort", "found_in_middle")


# ---------------------------------------------------------------------------------------------- reader
class CachedReader:
    """Greedy answers from a causal LM, reusing the KV cache of the longest common prompt prefix."""

    def __init__(self, model: Any, tokenizer: Any, model_id: str, cache_file: Path | None, max_new: int = 12):
        from transformers import DynamicCache

        self.model = model
        self.tok = tokenizer
        self.model_id = model_id
        self.max_new = max_new
        self.device = next(model.parameters()).device
        self._ids: list[int] = []
        self._kv: Any = None
        self._new_cache = lambda: DynamicCache(config=model.config)
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        self.cache_file = cache_file
        self.disk: dict[str, dict] = {}
        if cache_file is not None and cache_file.is_file():
            for line in cache_file.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    self.disk[r["key"]] = r
        self.stats = {"prompts": 0, "cache_hits": 0, "prefill_tokens": 0, "prompt_tokens": 0, "seconds": 0.0}

    def _forward(self, ids: list[int]) -> Any:
        """Logits [T, V] for ``ids`` appended to the cached sequence."""
        import torch

        x = torch.tensor([ids], device=self.device)  # [1, T]
        out = self.model(input_ids=x, cache=self._kv, use_cache=True)  # the cache grows in place
        self._ids += ids
        return out.logits[0].float()  # [T, V]

    def _crop_to(self, n: int) -> None:
        """Keep the first ``n`` cached positions."""
        extra = len(self._ids) - n
        if extra > 0:
            self._kv.crop(-extra)
            self._ids = self._ids[:n]

    def _prefill(self, ids: list[int]) -> Any:
        n = 0
        for a, b in zip(self._ids, ids[:-1], strict=False):
            if a != b:
                break
            n += 1
        if self._kv is None or n == 0:
            self._kv, self._ids, n = self._new_cache(), [], 0
        else:
            self._crop_to(n)
        self.stats["prefill_tokens"] += len(ids) - n
        self.stats["prompt_tokens"] += len(ids)
        return self._forward(ids[n:])[-1]  # [V]

    def memo(self, parts: list[Any], fn: Any) -> Any:
        """A JSON value computed by ``fn()`` once per ``parts``, kept in the disk cache."""
        key = hashlib.sha256(json.dumps(["memo", self.model_id, *parts]).encode()).hexdigest()
        if key not in self.disk:
            self.disk[key] = {"key": key, "value": fn()}
            if self.cache_file is not None:
                with self.cache_file.open("a") as fh:
                    fh.write(json.dumps(self.disk[key]) + "\n")
        return self.disk[key]["value"]

    def answer(self, prompt: str, answers: list[str]) -> dict:
        """``{"output", "correct", "answer_logprob"}`` for one prompt (cached on disk)."""
        import torch

        key = hashlib.sha256(json.dumps([self.model_id, prompt, answers]).encode()).hexdigest()
        self.stats["prompts"] += 1
        if key in self.disk:
            self.stats["cache_hits"] += 1
            return self.disk[key]
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.tok(prompt)["input_ids"]
            last = self._prefill(ids)  # [V]
            # Log-probability of the first gold answer string, teacher-forced after the prompt.
            ans = self.tok(" " + answers[0], add_special_tokens=False)["input_ids"]
            lps = [float(torch.log_softmax(last, -1)[ans[0]])]
            if len(ans) > 1:
                logits = self._forward(ans[:-1])  # [A-1, V]
                lp = torch.log_softmax(logits, -1)
                lps += [float(lp[i, t]) for i, t in enumerate(ans[1:])]
            self._crop_to(len(ids))
            gen: list[int] = []
            nxt = int(last.argmax())
            for _ in range(self.max_new):
                if nxt in self.eos:
                    break
                gen.append(nxt)
                if "\n" in self.tok.decode(gen):
                    break
                nxt = int(self._forward([nxt])[-1].argmax())
        text = self.tok.decode(gen).split("\n")[0].strip()
        res = {
            "key": key,
            "output": text,
            "correct": bool(has_answer(text, answers)),
            "answer_logprob": float(np.mean(lps)),
        }
        self.stats["seconds"] += time.perf_counter() - t0
        self.disk[key] = res
        if self.cache_file is not None:
            with self.cache_file.open("a") as fh:
                fh.write(json.dumps(res) + "\n")
        return res


# ---------------------------------------------------------------------------------------------- stats
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def mean_ci(x: list[float], seed: int = 0) -> dict:
    a = np.asarray(x, dtype=float)
    if len(a) == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    if len(a) == 1:
        return {"mean": float(a[0]), "ci95": [float(a[0]), float(a[0])], "n": 1}
    rng = np.random.default_rng(seed)
    boots = a[rng.integers(0, len(a), size=(2000, len(a)))].mean(axis=1)
    return {
        "mean": float(a.mean()),
        "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
        "n": len(a),
    }


def acc_summary(flags: list[bool]) -> dict:
    k, n = int(sum(flags)), len(flags)
    lo, hi = wilson(k, n)
    return {"accuracy": (k / n) if n else None, "ci95": [lo, hi], "correct": k, "n": n}


def paired_diff(a: list[float], b: list[float], seed: int = 0) -> dict:
    d = np.asarray(a, float) - np.asarray(b, float)
    return mean_ci(list(d), seed)


def correlations(x: list[float], y: list[float]) -> dict:
    from scipy import stats

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"pearson": None, "spearman": None, "n_slots": len(x)}
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    return {
        "pearson": float(pr.statistic),
        "pearson_p": float(pr.pvalue),
        "spearman": float(sr.statistic),
        "spearman_p": float(sr.pvalue),
        "n_slots": len(x),
    }


# ---------------------------------------------------------------------------------------------- parts
def gold_and_distractors(ex: Any) -> tuple[str, list[str]]:
    gold = ex.docs[ex.gold_index]["text"]
    return gold, [d["text"] for i, d in enumerate(ex.docs) if i != ex.gold_index]


def run_u_curve(reader: CachedReader, qi: int, ex: Any, slots: list[int]) -> list[dict]:
    from ctxcomp.compressors.reader import READER_TEMPLATE, slot_prompt

    gold, dis = gold_and_distractors(ex)
    out = []
    for s in sorted(slots, reverse=True):  # descending: each prompt shares the previous one's prefix
        docs = [*dis[:s], gold, *dis[s:]]
        prompt, _ = slot_prompt(ex.question, docs, READER_TEMPLATE)
        r = reader.answer(prompt, ex.answers)
        out.append(
            {"q": qi, "slot": s, "n_docs": len(docs), **{k: r[k] for k in ("correct", "answer_logprob")}}
        )
    return out


def relevance(reader: CachedReader, comp: Any, question: str, texts: list[str]) -> list[float]:
    """The pipeline's document relevance: best sentence score per document (cached on disk)."""

    def compute() -> list[float]:
        sents, scores, _ = comp.score(question, texts)
        best = [-math.inf] * len(texts)
        for s, sc in zip(sents, scores, strict=True):
            best[int(s.doc_id)] = max(best[int(s.doc_id)], float(sc))
        return [0.0 if math.isinf(v) else v for v in best]

    return list(reader.memo(["scores", comp.config.scorer, question, texts], compute))


def run_rank_reorder_all_slots(reader: CachedReader, comp: Any, qi: int, ex: Any, profile: Any) -> list[dict]:
    """(b2) ``u_shape`` and ``attnrank`` with the gold at every input slot (distractors as in part a)."""
    from ctxcomp.compressors.reader import READER_TEMPLATE, slot_prompt
    from ctxcomp.compressors.reorder import reorder

    gold, dis = gold_and_distractors(ex)
    out = []
    for s in range(len(dis) + 1):
        texts = [*dis[:s], gold, *dis[s:]]
        doc_scores = relevance(reader, comp, ex.question, texts)
        for name in ("u_shape", "attnrank"):
            order = reorder(name, doc_scores, profile=profile)
            prompt, _ = slot_prompt(ex.question, [texts[i] for i in order], READER_TEMPLATE)
            r = reader.answer(prompt, ex.answers)
            out.append(
                {
                    "q": qi,
                    "reorder": name,
                    "input_slot": s,
                    "output_slot": order.index(s),
                    "correct": r["correct"],
                    "answer_logprob": r["answer_logprob"],
                }
            )
    return out


def run_reorder(
    reader: CachedReader, comp: Any, attn_reader: Any, qi: int, ex: Any, profile: Any
) -> list[dict]:
    from ctxcomp.compressors.reader import READER_TEMPLATE, slot_prompt
    from ctxcomp.compressors.reorder import rank_order, reorder

    texts = [d["text"] for d in ex.docs]
    doc_scores = relevance(reader, comp, ex.question, texts)
    gold_rank = rank_order(doc_scores).index(ex.gold_index)
    out = []
    for name in REORDERERS_B:
        t0 = time.perf_counter()
        order = reorder(name, doc_scores, query=ex.question, docs=texts, reader=attn_reader, profile=profile)
        dt = time.perf_counter() - t0
        prompt, _ = slot_prompt(ex.question, [texts[i] for i in order], READER_TEMPLATE)
        r = reader.answer(prompt, ex.answers)
        out.append(
            {
                "q": qi,
                "reorder": name,
                "input_slot": ex.gold_index,
                "gold_rank": gold_rank,
                "output_slot": order.index(ex.gold_index),
                "reorder_seconds": round(dt, 3),
                "correct": r["correct"],
                "answer_logprob": r["answer_logprob"],
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- summary
def summarise(
    a10: list[dict], a20: list[dict], b: list[dict], b2: list[dict], profile: Any, slots20: list[int]
) -> dict:
    def curve(recs: list[dict], slots: list[int]) -> list[dict]:
        rows = []
        for s in slots:
            rs = [r for r in recs if r["slot"] == s]
            rows.append(
                {
                    "slot": s,
                    **acc_summary([r["correct"] for r in rs]),
                    "answer_logprob": mean_ci([r["answer_logprob"] for r in rs]),
                }
            )
        return rows

    # Only questions with every slot done enter the curves (balanced).
    def complete(recs: list[dict], slots: list[int]) -> list[dict]:
        qs = {r["q"] for r in recs}
        full = {q for q in qs if {r["slot"] for r in recs if r["q"] == q} >= set(slots)}
        return [r for r in recs if r["q"] in full]

    a10c = complete(a10, list(range(10)))
    a20c = complete(a20, slots20)
    c10 = curve(a10c, list(range(10)))
    c20 = curve(a20c, slots20)
    out: dict[str, Any] = {
        "a_u_curve": {
            "10_docs": {"questions": len({r["q"] for r in a10c}), "slots": c10},
            "20_docs": {"questions": len({r["q"] for r in a20c}), "slots": c20},
        }
    }
    bq = sorted(
        q for q in {r["q"] for r in b} if {x["reorder"] for x in b if x["q"] == q} >= set(REORDERERS_B)
    )
    by = {
        name: [next(r for r in b if r["q"] == q and r["reorder"] == name) for q in bq]
        for name in REORDERERS_B
    }
    best_slot = max(c10, key=lambda r: r["accuracy"] if r["accuracy"] is not None else -1) if c10 else None
    worst_slot = min(c10, key=lambda r: r["accuracy"] if r["accuracy"] is not None else 2) if c10 else None
    b_out: dict[str, Any] = {"questions": len(bq), "reorderers": {}}
    thirds = {
        "first (slots 1-3)": range(0, 3),
        "middle (slots 4-7)": range(3, 7),
        "last (slots 8-10)": range(7, 10),
    }
    for name, rs in by.items():
        per_third = {
            t: acc_summary([r["correct"] for r in rs if r["input_slot"] in rng]) for t, rng in thirds.items()
        }
        b_out["reorderers"][name] = {
            **acc_summary([r["correct"] for r in rs]),
            "answer_logprob": mean_ci([r["answer_logprob"] for r in rs]),
            "by_input_slot": per_third,
            "gold_output_slot_histogram": np.bincount([r["output_slot"] for r in rs], minlength=10).tolist(),
            "mean_reorder_seconds": float(np.mean([r["reorder_seconds"] for r in rs])) if rs else None,
        }
    if bq:
        b_out["gold_rank_histogram"] = np.bincount(
            [r["gold_rank"] for r in by["none"]], minlength=10
        ).tolist()
        b_out["paired_accuracy_difference"] = {
            f"attnrank - {o}": paired_diff(
                [float(r["correct"]) for r in by["attnrank"]], [float(r["correct"]) for r in by[o]]
            )
            for o in REORDERERS_B
            if o != "attnrank"
        }
        b_out["paired_logprob_difference"] = {
            f"attnrank - {o}": paired_diff(
                [r["answer_logprob"] for r in by["attnrank"]], [r["answer_logprob"] for r in by[o]]
            )
            for o in REORDERERS_B
            if o != "attnrank"
        }
    out["b_reorderers"] = b_out
    corr: dict[str, Any] = {}
    if profile is not None and c10:
        prof10 = list(profile.at(10).means)
        corr["10_docs"] = {
            "profile_vs_accuracy": correlations(prof10, [r["accuracy"] for r in c10]),
            "profile_vs_answer_logprob": correlations(prof10, [r["answer_logprob"]["mean"] for r in c10]),
            "profile_means": prof10,
        }
        if c20 and all(r["accuracy"] is not None for r in c20):
            prof20 = profile.at(20).means
            corr["20_docs"] = {
                "profile_vs_accuracy": correlations(
                    [prof20[s] for s in slots20], [r["accuracy"] for r in c20]
                ),
                "profile_vs_answer_logprob": correlations(
                    [prof20[s] for s in slots20], [r["answer_logprob"]["mean"] for r in c20]
                ),
            }
    out["c_correlation"] = corr
    # (b2) rank-based reorderers with the gold at every input slot, against no reordering (part a).
    b2q = sorted(q for q in {r["q"] for r in b2} if sum(1 for x in b2 if x["q"] == q) == 20)
    b2_out: dict[str, Any] = {"questions": len(b2q), "reorderers": {}}
    worst_after_b2: dict[str, Any] | None = None
    best_none_b2: dict[str, Any] | None = None
    if b2q:
        none_rows = [r for r in a10 if r["q"] in b2q]
        per = {
            "none": [
                {"input_slot": s, **acc_summary([r["correct"] for r in none_rows if r["slot"] == s])}
                for s in range(10)
            ]
        }
        for name in ("u_shape", "attnrank"):
            rs = [r for r in b2 if r["q"] in b2q and r["reorder"] == name]
            per[name] = [
                {"input_slot": s, **acc_summary([r["correct"] for r in rs if r["input_slot"] == s])}
                for s in range(10)
            ]
            b2_out["reorderers"][name] = {
                **acc_summary([r["correct"] for r in rs]),
                "answer_logprob": mean_ci([r["answer_logprob"] for r in rs]),
                "by_input_slot": per[name],
                "gold_output_slot_histogram": np.bincount(
                    [r["output_slot"] for r in rs], minlength=10
                ).tolist(),
            }
        b2_out["reorderers"]["none"] = {
            **acc_summary([r["correct"] for r in none_rows]),
            "answer_logprob": mean_ci([r["answer_logprob"] for r in none_rows]),
            "by_input_slot": per["none"],
        }
        for name in ("none", "u_shape", "attnrank"):
            rows = per[name]
            b2_out["reorderers"][name]["worst_input_slot"] = min(
                rows, key=lambda r: (r["accuracy"], r["input_slot"])
            )
            b2_out["reorderers"][name]["best_input_slot"] = max(
                rows, key=lambda r: (r["accuracy"], -r["input_slot"])
            )
        # Question-level paired comparison (the 10 input slots of a question are not independent).
        per_q = {
            name: [
                float(
                    np.mean(
                        [
                            r["correct"]
                            for r in (none_rows if name == "none" else b2)
                            if r["q"] == q and (name == "none" or r["reorder"] == name)
                        ]
                    )
                )
                for q in b2q
            ]
            for name in ("none", "u_shape", "attnrank")
        }
        b2_out["paired_accuracy_difference_by_question"] = {
            f"attnrank - {o}": paired_diff(per_q["attnrank"], per_q[o]) for o in ("none", "u_shape")
        }
        b2_out["note"] = (
            "Wilson intervals treat the question x input-slot pairs as independent (too narrow: pairs of one "
            "question are correlated); paired_accuracy_difference_by_question bootstraps over questions"
        )
        worst_after_b2 = b2_out["reorderers"]["attnrank"]["worst_input_slot"]
        best_none_b2 = b2_out["reorderers"]["none"]["best_input_slot"]
    out["b2_rank_reorderers_all_input_slots"] = b2_out

    targets: dict[str, Any] = {}
    if bq:
        acc = {n: b_out["reorderers"][n]["accuracy"] for n in REORDERERS_B}
        targets["attnrank_beats_u_shape_and_none"] = {
            "met": bool(acc["attnrank"] > acc["u_shape"] and acc["attnrank"] > acc["none"]),
            "accuracy": {n: acc[n] for n in ("attnrank", "u_shape", "none")},
            "note": "point estimates; see paired_accuracy_difference for intervals",
        }
        if worst_after_b2 is not None and best_none_b2 is not None:
            gap = best_none_b2["accuracy"] - worst_after_b2["accuracy"]
            targets["worst_slot_after_attnrank_within_2pts_of_best_slot_without"] = {
                "met": bool(gap <= 0.02),
                "best_slot_without_reordering": best_none_b2,
                "worst_input_slot_after_attnrank": worst_after_b2,
                "gap_points": round(100 * gap, 1),
                "questions": len(b2q),
                "note": "part b2: the same questions with the gold at every input slot",
            }
        elif best_slot is not None:
            worst_after = min(
                (v for v in b_out["reorderers"]["attnrank"]["by_input_slot"].values() if v["n"]),
                key=lambda v: v["accuracy"],
            )
            gap = best_slot["accuracy"] - worst_after["accuracy"]
            targets["worst_slot_after_attnrank_within_2pts_of_best_slot_without"] = {
                "met": bool(gap <= 0.02),
                "best_slot_without_reordering": {
                    "slot": best_slot["slot"],
                    "accuracy": best_slot["accuracy"],
                    "n": best_slot["n"],
                },
                "worst_input_third_after_attnrank": worst_after,
                "gap_points": round(100 * gap, 1),
                "note": "input slots binned in thirds (per-slot cells would hold one or two questions)",
            }
    if worst_slot is not None and best_slot is not None:
        targets["u_curve_spread_points"] = round(100 * (best_slot["accuracy"] - worst_slot["accuracy"]), 1)
    out["targets"] = targets
    return out


def plot(summary: dict, profile: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(12, 8.4))
    axes = grid.ravel()
    ax = axes[0]
    for key, color in (("10_docs", "C0"), ("20_docs", "C1")):
        c = summary["a_u_curve"][key]
        rows = [r for r in c["slots"] if r["n"]]
        if not rows:
            continue
        n_docs = 10 if key == "10_docs" else 20
        x = [(r["slot"] + 1) / n_docs for r in rows]
        y = [r["accuracy"] for r in rows]
        lo = [r["ci95"][0] for r in rows]
        hi = [r["ci95"][1] for r in rows]
        ax.plot(x, y, marker="o", color=color, label=f"{n_docs} docs (n={c['questions']} questions)")
        ax.fill_between(x, lo, hi, color=color, alpha=0.15)
    ax.set_xlabel("gold position (relative; 1 = last slot)")
    ax.set_ylabel("reader accuracy")
    ax.set_title("(a) accuracy vs gold position, no reordering")
    ax.set_ylim(0, 1)
    if profile is not None:
        ax2 = ax.twinx()
        x = [(i + 1) / profile.k for i in range(profile.k)]
        ax2.plot(x, profile.means, color="grey", ls="--", label="attention profile")
        ax2.fill_between(x, profile.ci_low, profile.ci_high, color="grey", alpha=0.1)
        ax2.set_ylabel("attention share (profile)")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[1]
    rows = summary["a_u_curve"]["10_docs"]["slots"]
    if rows and rows[0]["n"]:
        x = [r["slot"] + 1 for r in rows]
        y = [r["answer_logprob"]["mean"] for r in rows]
        lo = [r["answer_logprob"]["ci95"][0] for r in rows]
        hi = [r["answer_logprob"]["ci95"][1] for r in rows]
        ax.plot(x, y, marker="o")
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel("gold slot (10 docs)")
    ax.set_ylabel("mean log-prob of the gold answer")
    ax.set_title("(a) answer log-probability vs gold slot")

    ax = axes[2]
    b = summary["b_reorderers"]
    names = list(b["reorderers"])
    if names:
        acc = [b["reorderers"][n]["accuracy"] or 0 for n in names]
        err = [
            [a - b["reorderers"][n]["ci95"][0] for a, n in zip(acc, names, strict=True)],
            [b["reorderers"][n]["ci95"][1] - a for a, n in zip(acc, names, strict=True)],
        ]
        ax.bar(names, acc, yerr=err, capsize=4, color=["C7", "C1", "C2", "C3", "C4"][: len(names)])
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=20)
    ax.set_ylabel("reader accuracy")
    ax.set_title(f"(b) reorderers, gold at a random slot (n={b['questions']})")
    ax = axes[3]
    b2 = summary.get("b2_rank_reorderers_all_input_slots", {})
    for name, color in (("none", "C7"), ("u_shape", "C1"), ("attnrank", "C2")):
        rows = b2.get("reorderers", {}).get(name, {}).get("by_input_slot", [])
        if rows:
            ax.plot(
                [r["input_slot"] + 1 for r in rows],
                [r["accuracy"] for r in rows],
                marker="o",
                color=color,
                label=name,
            )
    ax.set_ylim(0, 1)
    ax.set_xlabel("gold slot in the input (10 docs)")
    ax.set_ylabel("reader accuracy")
    ax.set_title(f"(b2) accuracy by input gold slot after reordering (n={b2.get('questions', 0)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=12, help="questions (10 docs, all slots, and part b)")
    ap.add_argument("--n20", type=int, default=4, help="questions with 20 documents")
    ap.add_argument("--slots20", default="0,9,19", help="gold slots (0-based) tried with 20 documents")
    ap.add_argument("--budget-min", type=float, default=45.0, help="start no new question after this")
    ap.add_argument(
        "--n-all-slots",
        type=int,
        default=10,
        help="questions for which u_shape/attnrank see the gold at every slot",
    )
    ap.add_argument("--resume", action="store_true", help="reuse finished questions of the --out file")
    ap.add_argument("--out", type=Path, default=RESULTS / "position.json")
    ap.add_argument("--plot", type=Path, default=RESULTS / "position.png")
    ap.add_argument("--cache", type=Path, default=RESULTS / "position-cache.jsonl")
    ap.add_argument(
        "--profile", type=Path, help="position profile JSON (default: the one shipped for the reader)"
    )
    args = ap.parse_args()
    t_start = time.perf_counter()

    import torch

    from ctxcomp import CompressionConfig, Compressor
    from ctxcomp.compressors.profile import PositionProfile, shipped_profile_path

    cfg = CompressionConfig(proxy_model=args.reader, scorer="attention", device=args.device)
    comp = Compressor(cfg).load()
    attn_reader = comp.reader  # reuses the loaded model for attention_sort / found_in_middle
    reader = CachedReader(comp.proxy.model, comp.proxy.tokenizer, attn_reader.model_id, args.cache)
    ppath = args.profile or shipped_profile_path(attn_reader.model_id)
    profile = PositionProfile.load(ppath) if ppath else None
    slots20 = [int(s) for s in args.slots20.split(",")]
    ex10 = load_examples(split="eval", n_docs=10, limit=args.n)
    ex20 = load_examples(split="eval", n_docs=20, limit=args.n20)
    a10: list[dict] = []
    a20: list[dict] = []
    b: list[dict] = []
    b2: list[dict] = []
    timing = {"a10": 0.0, "b": 0.0, "b2": 0.0, "a20": 0.0}
    prev: dict[str, list[dict]] = {}
    prev_seconds = 0.0
    if args.resume and args.out.is_file():  # reuse finished parts of an earlier run of the same settings
        old = json.loads(args.out.read_text())
        prev = old.get("records", {})
        prev_seconds = float(old.get("seconds", 0.0)) + float(old.get("seconds_previous_runs", 0.0))
        timing = {k: float(old.get("part_seconds", {}).get(k, 0.0)) for k in timing}

    def reuse(part: str, qi: int, size: int) -> list[dict]:
        rows = [r for r in prev.get(part, []) if r["q"] == qi]
        return rows if len(rows) == size else []

    def save() -> None:
        summary = summarise(a10, a20, b, b2, profile, slots20)
        result = {
            "benchmark": "position",
            "reader": attn_reader.model_id,
            "reader_weights_sha256": attn_reader.weights_sha256,
            "device": str(reader.device),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "data": "nq-open-dev, eval split (sha256(question) % 5 == 0), hard MiniLM distractors",
            "prompt_template": "ctxcomp.compressors.reader.READER_TEMPLATE",
            "accuracy_metric": "greedy <=12 new tokens, stop at newline; normalised answer substring match",
            "relevance_scores_for_b": "Compressor.score, scorer='attention'; max sentence score per document",
            "profile": {
                "path": str(ppath.name) if ppath else None,
                "k": profile.k if profile else None,
                "n": profile.n if profile else None,
            },
            "budget_minutes": args.budget_min,
            "requested": {"n": args.n, "n20": args.n20, "slots20": slots20, "n_all_slots": args.n_all_slots},
            "seconds_previous_runs": prev_seconds,
            "seconds": round(time.perf_counter() - t_start, 1),
            "part_seconds": {k: round(v, 1) for k, v in timing.items()},
            "reader_stats": reader.stats,
            **summary,
            "records": {"a10": a10, "a20": a20, "b": b, "b2": b2},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        try:
            plot(summary, profile, args.plot)
        except ImportError:
            print("matplotlib missing: no plot (pip install matplotlib)")

    def minutes() -> float:
        return (time.perf_counter() - t_start) / 60

    # Parts (a, 10 docs) and (b) question by question until 75% of the budget, then (a, 20 docs).
    for qi, ex in enumerate(ex10):
        if minutes() > 0.75 * args.budget_min:
            print(f"10-document budget reached after {qi} questions")
            break
        t = time.perf_counter()
        a10 += reuse("a10", qi, 10) or run_u_curve(reader, qi, ex, list(range(10)))
        timing["a10"] += time.perf_counter() - t
        t = time.perf_counter()
        b += reuse("b", qi, len(REORDERERS_B)) or run_reorder(reader, comp, attn_reader, qi, ex, profile)
        timing["b"] += time.perf_counter() - t
        if qi < args.n_all_slots:
            t = time.perf_counter()
            b2 += reuse("b2", qi, 20) or run_rank_reorder_all_slots(reader, comp, qi, ex, profile)
            timing["b2"] += time.perf_counter() - t
        save()
        done = sum(r["correct"] for r in a10 if r["q"] == qi)
        print(f"q{qi}: {done}/10 slots correct; elapsed {minutes():.1f} min", flush=True)
    for qi, ex in enumerate(ex20):
        if minutes() > args.budget_min:
            print(f"20-document budget reached after {qi} questions")
            break
        t = time.perf_counter()
        a20 += reuse("a20", qi, len(slots20)) or run_u_curve(reader, qi, ex, slots20)
        timing["a20"] += time.perf_counter() - t
        save()
        print(f"q{qi} (20 docs) done; elapsed {minutes():.1f} min", flush=True)
    save()
    print(json.dumps({k: v for k, v in json.loads(args.out.read_text()).items() if k != "records"}, indent=1))


if __name__ == "__main__":
    main()
