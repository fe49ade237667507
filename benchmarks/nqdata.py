"""NQ multi-document sets for the benchmarks: thin wrappers over :mod:`ctxcomp.training`.

The sets (gold passage + hard MiniLM-neighbour distractors, answer-free, gold at a seeded random
slot, questions split train/eval by hash) are built by the package itself, so benchmarks, probe
training and tests all use one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctxcomp.training.examples import build_examples
from ctxcomp.training.qa import has_answer, read_jsonl, split_of

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "nq-open-dev.jsonl"

__all__ = ["DEFAULT_DATA", "Example", "has_answer", "load_examples", "split_of"]


@dataclass
class Example:
    """One question with its documents as plain dicts (``{"id", "text", "metadata"}``)."""

    question: str
    answers: list[str]
    docs: list[dict]
    gold_index: int


def load_examples(
    path: Path = DEFAULT_DATA,
    *,
    split: str = "eval",
    n_docs: int = 20,
    seed: int = 0,
    limit: int | None = None,
) -> list[Example]:
    """Build multi-document examples (gold at a seeded random position)."""
    out = []
    for ex in build_examples(read_jsonl(path), split=split, n_docs=n_docs, seed=seed, limit=limit):
        docs = [{"id": d.id, "text": d.text, "metadata": dict(d.metadata)} for d in ex.docs]
        out.append(Example(ex.question, list(ex.answers), docs, ex.gold_index))
    return out
