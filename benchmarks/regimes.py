"""The evaluation and training sets of the scorer benchmark, one builder per retrieval regime.

Every set comes from files shipped in ``benchmarks/data/`` (provenance and licences in
``benchmarks/data/SOURCES.md``), so a clean checkout rebuilds exactly the same contexts:

* ``nq-dense``, ``nq-lexical``, ``nq-mixed``, ``nq-random``: NQ-open gold passage + 19 answer-free
  passages of other questions, MiniLM-nearest / BM25-nearest / alternating / random; eval split =
  ``sha256(question) % 5 == 0``.
* ``same-topic``: SQuAD questions, gold paragraph + 9 other paragraphs of the same article; eval
  split = one question in two by hash.
* ``multihop``: HotpotQA (train split of the dataset) in its distractor setting: 2 gold + 8
  same-topic TF-IDF-retrieved paragraphs, sentence-level supporting facts; eval split = one in two.

Example:
    >>> sorted(SETS)
    ['multihop', 'nq-dense', 'nq-lexical', 'nq-mixed', 'nq-random', 'same-topic']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctxcomp.training.contexts import QAContext, multihop_contexts, nq_contexts, same_topic_contexts

DATA = Path(__file__).resolve().parent / "data"
SETS = ("nq-dense", "nq-lexical", "nq-mixed", "nq-random", "same-topic", "multihop")


def _rows(pattern: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(DATA.glob(pattern)):
        with path.open(encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def contexts(
    name: str,
    *,
    split: str,
    n: int | None = None,
    seed: int = 0,
    n_docs: int | tuple[int, int] = 20,
    embedder: Any = None,
) -> list[QAContext]:
    """The contexts of one set.

    Args:
        name: One of :data:`SETS`.
        split: ``train``, ``eval`` or ``all``.
        n: At most this many.
        seed: Seed of the gold slot (and of random picks / document counts).
        n_docs: NQ documents per context (or a ``(low, high)`` range, for training).
        embedder: MiniLM override for the dense regimes.

    Returns:
        The contexts.
    """
    if name.startswith("nq-"):
        rows = _rows("nq-open-dev.jsonl")
        return nq_contexts(
            rows, regime=name[3:], split=split, n_docs=n_docs, seed=seed, limit=n, embedder=embedder
        )
    if name == "same-topic":
        return same_topic_contexts(_rows("samehop-*.jsonl"), split=split, seed=seed, limit=n)
    if name == "multihop":
        return multihop_contexts(_rows("multihop-*.jsonl"), split=split, limit=n)
    raise ValueError(f"unknown set {name!r}; use one of {SETS}")


__all__ = ["DATA", "SETS", "contexts"]
