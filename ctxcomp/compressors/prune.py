"""Budgeted selection and assembly of the kept sentences.

Selection is greedy by score under a token budget counted with the reader tokenizer. While
selecting, the assembled text is counted per document (:class:`DocCounts`: each document's kept
text is tokenised once per distinct kept set, so a re-count after adding or dropping one sentence
costs one short document, not the whole context). The final text, in its final document order, is
then counted exactly and the lowest-scoring kept sentence dropped until it fits
(:func:`fit_exactly`), so separators and tokenizer merges across boundaries can never push it over.

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


class DocCounts:
    """Token count of an assembled context from cached per-document counts.

    ``total(kept)`` is the sum of each document's kept-text count plus one separator count per
    document boundary. For tokenizers that split on whitespace before merging (BPE, SentencePiece
    and WordPiece models in practice) this equals the exact count of :func:`assemble`'s output; it
    is an estimate in general, which is why :func:`fit_exactly` checks the final text.

    Args:
        docs: All documents.
        sentences: All sentences (grouped by document, in source order).
        doc_of: Document index of each sentence.
        count: Exact token count of a string.

    Example:
        >>> from ctxcomp.types import Document, Sentence
        >>> docs = [Document("a", "One. Two."), Document("b", "Three.")]
        >>> sents = [Sentence("a", 0, 0, 4, "One."), Sentence("a", 1, 5, 9, "Two."),
        ...          Sentence("b", 0, 0, 6, "Three.")]
        >>> words = lambda t: len(t.split())
        >>> DocCounts(docs, sents, [0, 0, 1], count=words).total([True, False, True])
        2
    """

    def __init__(
        self,
        docs: Sequence[Document],
        sentences: Sequence[Sentence],
        doc_of: Sequence[int],
        *,
        count: Callable[[str], int],
    ) -> None:
        self.docs = docs
        self.sentences = sentences
        self.doc_of = doc_of
        self.count = count
        self.separator = count(DOC_SEPARATOR)
        self._cache: dict[tuple[int, tuple[int, ...]], int] = {}

    def total(self, kept: Sequence[bool]) -> int:
        """Tokens of the context assembled from ``kept`` (see the class note on exactness).

        Args:
            kept: Keep flag per sentence.

        Returns:
            The count.
        """
        by_doc: dict[int, list[int]] = {}
        for i, k in enumerate(kept):
            if k:
                by_doc.setdefault(self.doc_of[i], []).append(i)
        total = 0
        for d, idx in by_doc.items():
            key = (d, tuple(idx))
            c = self._cache.get(key)
            if c is None:
                c = self.count(doc_text(self.docs[d], [self.sentences[i] for i in idx]))
                self._cache[key] = c
            total += c
        return total + self.separator * max(len(by_doc) - 1, 0)


def doc_scores(
    n_docs: int, doc_of: Sequence[int], scores: np.ndarray, kept: Sequence[bool]
) -> list[float | None]:
    """Best kept-sentence score per document, ``None`` for documents with nothing kept.

    Args:
        n_docs: Number of documents.
        doc_of: ``[S]`` document index of each sentence.
        scores: ``[S]`` scores.
        kept: ``[S]`` keep flags.

    Returns:
        One score (or ``None``) per document.

    Example:
        >>> doc_scores(2, [0, 0, 1], np.array([0.2, 0.7, 0.1]), [True, True, False])
        [0.7, None]
    """
    out: list[float | None] = [None] * n_docs
    for d, sc, k in zip(doc_of, scores, kept, strict=True):
        if k:
            cur = out[d]
            out[d] = float(sc) if cur is None else max(cur, float(sc))
    return out


def fit_exactly(
    kept: list[bool],
    scores: np.ndarray,
    budget: int,
    *,
    render: Callable[[list[bool]], str],
    count: Callable[[str], int],
) -> tuple[list[bool], str, int]:
    """Enforce the budget on the final text: drop the lowest-scoring kept sentence until it fits.

    Args:
        kept: Keep flags from :func:`select` (not modified).
        scores: ``[S]`` scores.
        budget: Maximum tokens.
        render: Builds the final text from flags (documents already placed; only sentences drop).
        count: Exact token count of a string.

    Returns:
        ``(kept, text, tokens)`` of the final text; ``tokens <= budget``.

    Example:
        >>> render = lambda k: " ".join(w for w, f in zip("a b c".split(), k) if f)
        >>> words = lambda t: len(t.split())
        >>> fit_exactly([True] * 3, np.array([3.0, 1.0, 2.0]), 2, render=render, count=words)
        ([True, False, True], 'a c', 2)
    """
    kept = list(kept)
    text = render(kept)
    n = count(text)
    while n > budget:
        live = [i for i, k in enumerate(kept) if k]
        if not live:
            break
        worst = min(live, key=lambda i: (float(scores[i]), -i))
        kept[worst] = False
        text = render(kept)
        n = count(text)
    return kept, text, n
