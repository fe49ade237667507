"""Budgeted selection and assembly of the kept sentences.

Selection is greedy by score under an exact token budget counted with the reader tokenizer.
The assembled text is re-counted and the lowest-scoring kept sentence dropped until it fits,
so separators and tokenizer merges across boundaries can never push it over.

Example:
    >>> from ctxcomp.types import Document, Sentence
    >>> docs = [Document("a", "One. Two. Three.")]
    >>> spans = [(0, 4), (5, 9), (10, 16)]
    >>> sents = [Sentence("a", i, s, e, docs[0].text[s:e]) for i, (s, e) in enumerate(spans)]
    >>> assemble(docs, [0], sents, [True, False, True])
    'One. Three.'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ctxcomp.types import Document, Sentence

DOC_SEPARATOR = "\n\n"


def _gap(doc: Document, prev: Sentence, cur: Sentence) -> str:
    """Separator before a kept sentence, from the whitespace that precedes it in the source.

    No whitespace (CJK text) gives ``""``, whitespace with a newline gives ``"\n"``, other
    whitespace a single space.
    """
    i = cur.start
    while i > prev.end and doc.text[i - 1].isspace():
        i -= 1
    lead = doc.text[i : cur.start]
    if not lead:
        return ""
    return "\n" if "\n" in lead else " "


def doc_text(doc: Document, sents: Sequence[Sentence]) -> str:
    """Join a document's kept sentences (source order) with normalised whitespace.

    Args:
        doc: The document.
        sents: Its kept sentences in source order.

    Returns:
        The kept text.
    """
    out: list[str] = []
    prev: Sentence | None = None
    for s in sents:
        if prev is not None:
            out.append(_gap(doc, prev, s))
        out.append(s.text)
        prev = s
    return "".join(out)


def assemble(
    docs: Sequence[Document], order: Sequence[int], sentences: Sequence[Sentence], kept: Sequence[bool]
) -> str:
    """Build the final context: documents in ``order``, kept sentences in source order.

    Args:
        docs: All documents.
        order: Document indices in output order.
        sentences: All sentences (grouped by document, in source order).
        kept: Keep flag per sentence.

    Returns:
        The context string; documents separated by a blank line.
    """
    by_doc: dict[str, list[Sentence]] = {}
    for s, k in zip(sentences, kept, strict=True):
        if k:
            by_doc.setdefault(s.doc_id, []).append(s)
    parts = [doc_text(docs[i], by_doc[docs[i].id]) for i in order if docs[i].id in by_doc]
    return DOC_SEPARATOR.join(parts)


def select(
    scores: np.ndarray,
    n_tokens: Sequence[int],
    budget: int,
    *,
    count: Callable[[list[bool]], int],
    max_fill_checks: int = 32,
) -> list[bool]:
    """Greedy selection by score under an exact budget.

    Sentences are taken in descending score (ties: earlier first) while their token cost plus one
    separator token fits; then the exact count of the assembled text is checked and the
    lowest-scoring kept sentence dropped until it fits; leftover budget is then filled with the
    best remaining sentences that fit exactly.

    Args:
        scores: ``[S]`` scores.
        n_tokens: Tokens per sentence under the reader tokenizer.
        budget: Maximum tokens of the assembled text.
        count: Exact token count of the text assembled from a keep mask.
        max_fill_checks: At most this many exact re-counts while filling leftover budget.

    Returns:
        Keep flag per sentence.

    Example:
        >>> select(np.array([0.1, 0.9, 0.5]), [3, 3, 3], 7, count=lambda k: 4 * sum(k) - 1)
        [False, True, True]
    """
    n = len(n_tokens)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    kept = [False] * n
    used = 0
    for i in order:
        cost = n_tokens[i] + (1 if used else 0)
        if n_tokens[i] > 0 and used + cost <= budget:
            kept[i] = True
            used += cost
    taken = [i for i in order if kept[i]]
    current = count(kept)
    while taken and current > budget:
        kept[taken.pop()] = False
        current = count(kept)
    # The estimate is conservative (a separator may merge into a neighbour's token): fill the slack
    # with the best remaining sentences, each addition checked exactly. Bounded number of checks.
    tries = 0
    for i in order:
        if tries >= max_fill_checks or current >= budget:
            break
        if kept[i] or n_tokens[i] == 0 or n_tokens[i] > budget - current + 1:
            continue
        tries += 1
        kept[i] = True
        c = count(kept)
        if c <= budget:
            current = c
        else:
            kept[i] = False
    return kept
