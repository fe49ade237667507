"""Budgeted selection: per-document counting while selecting, exact enforcement on the final text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from ctxcomp.compressors.prune import DocCounts, assemble, fit_exactly, select
from ctxcomp.text.split import split_sentences
from ctxcomp.text.tokens import TokenCounter
from ctxcomp.types import Document

DOCS = [
    Document("a", "The Eiffel Tower is in Paris. Paris is the capital of France. It rains."),
    Document("b", "Röntgen won the first Nobel Prize in Physics in 1901. He was German."),
    Document("c", "东京是日本的首都。你好！ Emoji 😀 and numbers 3.14 are fine.\n- a bullet\n- another one"),
]


def _split() -> tuple[list, list[int]]:
    sents, doc_of = [], []
    for i, d in enumerate(DOCS):
        for s in split_sentences(d):
            sents.append(s)
            doc_of.append(i)
    return sents, doc_of


def test_doc_counts_equal_exact_count_for_bpe(tiny_qwen: Path) -> None:
    counter = TokenCounter(AutoTokenizer.from_pretrained(tiny_qwen))
    sents, doc_of = _split()
    counts = DocCounts(DOCS, sents, doc_of, count=counter.count)

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.booleans(), min_size=len(sents), max_size=len(sents)))
    def prop(kept: list[bool]) -> None:
        exact = counter.count(assemble(DOCS, [0, 1, 2], sents, kept))
        assert counts.total(kept) == exact

    prop()


def test_fit_exactly_repairs_an_undercounting_estimate() -> None:
    # A tokenizer that merges across document boundaries: "x.\n\n" costs 3 extra tokens, which
    # per-document counts cannot see.
    def count(text: str) -> int:
        return len(text.split()) + 3 * text.count(".\n\n")

    sents, doc_of = _split()
    scores = np.linspace(1.0, 0.0, len(sents))
    n_tok = [count(s.text) for s in sents]
    budget = 25
    estimate = DocCounts(DOCS, sents, doc_of, count=count)
    kept = select(scores, n_tok, budget, count=estimate.total)

    def render(flags: list[bool]) -> str:
        return assemble(DOCS, [0, 1, 2], sents, flags)

    assert count(render(kept)) > budget, "the estimate should have overshot in this setup"
    fixed, text, n = fit_exactly(kept, scores, budget, render=render, count=count)
    assert n == count(text) <= budget
    dropped = [i for i in range(len(sents)) if kept[i] and not fixed[i]]
    still = [i for i in range(len(sents)) if fixed[i]]
    assert dropped and max(scores[dropped]) <= min(scores[still])  # the lowest-scoring went first
