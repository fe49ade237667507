"""Multi-document QA contexts in several retrieval regimes, with sentence labels.

A compressor meets passages a retriever chose, so probes are trained and judged on contexts whose
distractors come from several regimes (``../shared/DESIGN.md``, "Evaluating a scorer honestly"):

* NQ-open pool (each question's gold passage; distractors are OTHER questions' passages that hold
  no answer): ``dense`` (MiniLM-nearest), ``lexical`` (BM25-nearest), ``mixed`` (alternating the
  two) and ``random``;
* ``same-topic`` single-hop: a gold passage and passages of the same article or retrieved for the
  same question (``{"gold", "distractors"}`` rows);
* ``multihop``: HotpotQA-style rows (every paragraph of the example, sentence-level supporting
  facts; the distractors are the dataset's own same-topic retrieved paragraphs).

A :class:`QAContext` labels sentences either by answer string (single-hop) or by the character
spans of the supporting facts (multi-hop: every fact must survive). Questions are split
train/eval by a hash of their text (:func:`ctxcomp.training.qa.split_of`).

Example:
    >>> ctx = QAContext("q", "Who?", ("Ann",), (Document("a", "Ann did. Bob sat."),), (), (0,), "x", "x")
    >>> from ctxcomp.text.split import split_documents
    >>> sentence_labels(ctx, split_documents(list(ctx.docs))).tolist()
    [True, False]
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.errors import ConfigError, InputError
from ctxcomp.training.qa import has_answer, passage, split_of
from ctxcomp.types import Candidates, Document

NQ_REGIMES = ("dense", "lexical", "mixed", "random")
REGIMES = (*NQ_REGIMES, "same-topic", "multihop")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class QAContext:
    """A question with its documents and what a compressor must keep.

    Attributes:
        id: Stable id.
        question: The question.
        answers: Gold answer strings.
        docs: Documents in context order.
        support: ``(doc index, start, end)`` character spans of supporting facts (empty: sentences
            are labelled by answer string).
        gold: Indices of the gold documents.
        source: Dataset name.
        regime: One of :data:`REGIMES`.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    docs: tuple[Document, ...]
    support: tuple[tuple[int, int, int], ...]
    gold: tuple[int, ...]
    source: str
    regime: str

    def to_json(self) -> dict[str, Any]:
        """The JSONL form read by :func:`read_contexts`.

        Returns:
            A JSON-serialisable dict.
        """
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "docs": [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in self.docs],
            "support": [list(s) for s in self.support],
            "gold": list(self.gold),
            "source": self.source,
            "regime": self.regime,
        }


def read_contexts(path: str | Path) -> list[QAContext]:
    """Contexts, one a line: :meth:`QAContext.to_json` objects, or any ``{"question", "answers",
    "docs": [str | {"id"?, "text", "metadata"?}]}`` rows (labelled by answer string).

    Args:
        path: A JSONL(.gz) file.

    Returns:
        The contexts.

    Raises:
        InputError: A line lacks a field or holds a bad document.
    """
    from ctxcomp.records import parse_documents
    from ctxcomp.training.qa import iter_jsonl

    out = []
    for lineno, r in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(r, dict) or not isinstance(r.get("question"), str) or "docs" not in r:
            raise InputError(
                where, "needs 'question', 'answers' and 'docs'", 'write {"question", "answers", "docs"}'
            )
        answers = r.get("answers", [])
        if not isinstance(answers, list):
            raise InputError(f"{where}.answers", "must be a list of strings", 'write "answers": ["..."]')
        try:
            support = tuple((int(d), int(a), int(b)) for d, a, b in r.get("support", []))
            gold = tuple(int(g) for g in r.get("gold", []))
        except (TypeError, ValueError) as err:
            raise InputError(
                f"{where}.support", f"is malformed ({err})", "write [[doc, start, end], ...]"
            ) from err
        docs = tuple(parse_documents(r["docs"], where=f"{where}.docs"))
        out.append(
            QAContext(
                str(r.get("id", lineno)),
                r["question"],
                tuple(str(a) for a in answers),
                docs,
                support,
                gold,
                str(r.get("source", "")),
                str(r.get("regime", "")),
            )
        )
    return out


def sentence_labels(ctx: QAContext, cands: Candidates) -> np.ndarray:
    """Which sentences a compressor must keep: overlapping a supporting fact, or holding an answer.

    Args:
        ctx: The context.
        cands: Its documents split into sentences.

    Returns:
        ``[S]`` bool.
    """
    if not ctx.support:
        return np.array([has_answer(s.text, ctx.answers) for s in cands.sentences], dtype=bool)
    n_facts = len(ctx.support)
    return np.array(
        [any(_overlaps(ctx, cands, i, f) for f in range(n_facts)) for i in range(len(cands.sentences))],
        dtype=bool,
    )


def _overlaps(ctx: QAContext, cands: Candidates, i: int, f: int) -> bool:
    d, a, b = ctx.support[f]
    s = cands.sentences[i]
    return cands.doc_of[i] == d and s.start < b and s.end > a


def fact_sentences(ctx: QAContext, cands: Candidates, fact: int) -> list[int]:
    """Sentences that overlap supporting fact ``fact``.

    Args:
        ctx: The context.
        cands: Its sentences.
        fact: Index into ``ctx.support``.

    Returns:
        Sentence indices.
    """
    return [i for i in range(len(cands.sentences)) if _overlaps(ctx, cands, i, fact)]


def all_facts_kept(ctx: QAContext, cands: Candidates, kept: Sequence[bool]) -> bool:
    """Whether every supporting fact survives (every sentence overlapping it is kept).

    Args:
        ctx: The context (with ``support``).
        cands: Its sentences.
        kept: Keep flag per sentence.

    Returns:
        True when all facts are kept (vacuously true without facts).
    """
    return all(all(kept[i] for i in fact_sentences(ctx, cands, f)) for f in range(len(ctx.support)))


# ---------------------------------------------------------------------------------------------- NQ pool
class BM25:
    """Okapi BM25 over a fixed collection (term statistics computed once).

    Args:
        texts: The collection.
        k1: Term-frequency saturation.
        b: Length normalisation.

    Example:
        >>> BM25(["paris is in france", "berlin"]).scores("paris").round(2).tolist()
        [0.56, 0.0]
    """

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.docs = [Counter(w.lower() for w in _WORD.findall(t)) for t in texts]
        self.lens = np.array([sum(c.values()) for c in self.docs], dtype=np.float64)
        self.avg = max(float(self.lens.mean()) if len(self.lens) else 0.0, 1e-9)
        df: Counter[str] = Counter()
        for c in self.docs:
            df.update(c.keys())
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}
        self.k1, self.b = k1, b

    def scores(self, query: str) -> np.ndarray:
        """``[N]`` BM25 of every text for ``query``."""
        q = {w.lower() for w in _WORD.findall(query)}
        out = np.zeros(len(self.docs))
        norm = self.k1 * (1 - self.b + self.b * self.lens / self.avg)  # [N]
        for i, c in enumerate(self.docs):
            s = 0.0
            for w in q:
                f = c.get(w, 0)
                if f:
                    s += self.idf[w] * f * (self.k1 + 1) / (f + norm[i])
            out[i] = s
        return out


def nq_contexts(
    rows: Sequence[dict[str, Any]],
    *,
    regime: str,
    split: str = "eval",
    n_docs: int | tuple[int, int] = 20,
    seed: int = 0,
    limit: int | None = None,
    embedder: Any = None,
) -> list[QAContext]:
    """Contexts from an NQ-open pool: each question's gold passage plus answer-free distractors.

    Args:
        rows: ``{"question", "answers", "ctxs": [gold, ...]}`` rows.
        regime: ``dense``, ``lexical``, ``mixed`` or ``random`` (see the module docstring).
        split: ``train``, ``eval`` or ``all``.
        n_docs: Documents per context, or a ``(low, high)`` range drawn per question.
        seed: Seed of the document counts, random picks and the gold slot.
        limit: At most this many contexts.
        embedder: Embedder for ``dense``/``mixed`` (default MiniLM).

    Returns:
        The contexts, in row order.

    Raises:
        ConfigError: Unknown regime or split.
    """
    if regime not in NQ_REGIMES:
        raise ConfigError("regime", f"unknown NQ regime {regime!r}", f"use one of {list(NQ_REGIMES)}")
    if split not in ("train", "eval", "all"):
        raise ConfigError("split", f"unknown split {split!r}", "use train, eval or all")
    passages = [passage(r["ctxs"][0]) for r in rows]
    chosen = [i for i, r in enumerate(rows) if split == "all" or split_of(r["question"]) == split]
    if limit is not None:
        chosen = chosen[:limit]
    rng = random.Random(f"{seed}-{regime}")
    pv = qv = None
    if regime in ("dense", "mixed"):
        from ctxcomp.training.embeddings import cached_embed

        if embedder is None:
            from ctxcomp.retrieval import resolve_embedder

            embedder = resolve_embedder(None)
        pv = cached_embed(embedder, passages)  # [P, dim]
        qv = cached_embed(embedder, [r["question"] for r in rows])  # [Q, dim]
    bm = BM25(passages) if regime in ("lexical", "mixed") else None
    out = []
    for i in chosen:
        r = rows[i]
        k = n_docs if isinstance(n_docs, int) else rng.randint(n_docs[0], n_docs[1])
        answers = tuple(r["answers"])

        def ok(j: int, i: int = i, answers: tuple[str, ...] = answers) -> bool:
            return j != i and passages[j] != passages[i] and not has_answer(passages[j], answers)

        ranked: list[Iterable[int]] = []
        if pv is not None and qv is not None:
            ranked.append(int(j) for j in np.argsort(-(pv @ qv[i]), kind="stable"))
        if bm is not None:
            ranked.append(int(j) for j in np.argsort(-bm.scores(r["question"]), kind="stable"))
        if regime == "random":
            perm = list(range(len(rows)))
            rng.shuffle(perm)
            ranked.append(iter(perm))
        picks: list[int] = []
        streams = [iter(s) for s in ranked]
        while len(picks) < k - 1 and streams:
            for s in list(streams):
                j = next((j for j in s if ok(j) and j not in picks), None)
                if j is None:
                    streams.remove(s)
                elif len(picks) < k - 1:
                    picks.append(j)
        docs = [Document(f"p{j}", passages[j], {"gold": False}) for j in picks]
        pos = rng.randrange(len(docs) + 1)
        docs.insert(pos, Document(f"p{i}", passages[i], {"gold": True}))
        out.append(QAContext(f"nq-{i}", r["question"], answers, tuple(docs), (), (pos,), "nq-open", regime))
    return out


# ---------------------------------------------------------------------------------------------- other sets
def same_topic_contexts(
    rows: Sequence[dict[str, Any]],
    *,
    split: str = "eval",
    eval_every: int = 2,
    n_docs: int = 10,
    seed: int = 0,
    limit: int | None = None,
) -> list[QAContext]:
    """Single-hop contexts whose distractors are same-topic (``{"gold", "distractors"}`` rows).

    Args:
        rows: Rows of ``benchmarks/data/samehop-*.jsonl``.
        split: ``train``, ``eval`` or ``all``.
        eval_every: One question in this many (by hash) is ``eval``.
        n_docs: Documents per context (gold + up to ``n_docs - 1`` distractors).
        seed: Seed of the gold slot.
        limit: At most this many contexts.

    Returns:
        The contexts.
    """
    rng = random.Random(f"{seed}-same-topic")
    out = []
    for r in rows:
        if split != "all" and split_of(r["question"], eval_every=eval_every) != split:
            continue
        docs = [
            Document(f"d{j}", passage(d), {"gold": False})
            for j, d in enumerate(r["distractors"][: n_docs - 1])
        ]
        pos = rng.randrange(len(docs) + 1)
        docs.insert(pos, Document("gold", passage(r["gold"]), {"gold": True}))
        out.append(
            QAContext(
                str(r["id"]),
                r["question"],
                tuple(r["answers"]),
                tuple(docs),
                (),
                (pos,),
                r.get("source", ""),
                "same-topic",
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def multihop_contexts(
    rows: Sequence[dict[str, Any]],
    *,
    split: str = "eval",
    eval_every: int = 2,
    limit: int | None = None,
) -> list[QAContext]:
    """Multi-hop contexts from HotpotQA-style rows (``context`` paragraphs, ``supporting_facts``).

    Each paragraph becomes ``"Title. sentence sentence ..."`` (the dataset's sentences joined as
    they are); each supporting fact becomes the character span of its sentence.

    Args:
        rows: Rows of ``benchmarks/data/multihop-*.jsonl``.
        split: ``train``, ``eval`` or ``all``.
        eval_every: One question in this many (by hash) is ``eval``.
        limit: At most this many contexts.

    Returns:
        The contexts (in the dataset's paragraph order).
    """
    out = []
    for r in rows:
        if split != "all" and split_of(r["question"], eval_every=eval_every) != split:
            continue
        docs, spans, titles = [], {}, {}
        for j, (title, sents) in enumerate(r["context"]):
            head = f"{title}. "
            pos, parts = len(head), [head]
            for k, s in enumerate(sents):
                spans[(title, k)] = (j, pos, pos + len(s))
                parts.append(s)
                pos += len(s)
            titles[title] = j
            docs.append(Document(f"d{j}", "".join(parts).strip(), {"title": title}))
        facts = {(t, k) for t, k in r["supporting_facts"] if (t, k) in spans}
        support = tuple(sorted(spans[f] for f in facts if spans[f][2] > spans[f][1]))
        gold = tuple(sorted({s[0] for s in support}))
        out.append(
            QAContext(
                str(r["id"]),
                r["question"],
                (r["answer"],),
                tuple(docs),
                support,
                gold,
                r.get("source", ""),
                "multihop",
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def data_kind(row: Any) -> str:
    """Which builder a data row belongs to: ``nq``, ``same-topic``, ``multihop`` or ``context``.

    Args:
        row: One parsed JSONL row.

    Returns:
        The kind.

    Raises:
        InputError: A row of no known shape.

    Example:
        >>> data_kind({"question": "q", "answers": ["a"], "ctxs": [{"text": "a"}]})
        'nq'
    """
    if isinstance(row, dict):
        if "ctxs" in row:
            return "nq"
        if "gold" in row and "distractors" in row:
            return "same-topic"
        if "context" in row and "supporting_facts" in row:
            return "multihop"
        if "docs" in row and "question" in row:
            return "context"
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise InputError(
        "--data",
        f"has a row of unknown shape (keys {keys})",
        "pass NQ-open rows (ctxs), same-topic rows (gold, distractors), HotpotQA-style rows "
        "(context, supporting_facts) or contexts (question, answers, docs)",
    )


def training_contexts(
    paths: Sequence[str | Path],
    *,
    split: str = "train",
    nq_regimes: Sequence[str] = NQ_REGIMES,
    n_docs: int | tuple[int, int] = (4, 20),
    limit: int | None = None,
    seed: int = 0,
    embedder: Any = None,
    nq_limit: int | None = None,
) -> list[QAContext]:
    """Contexts of every data file, each file's rows built by their kind (:func:`data_kind`).

    NQ-open questions are dealt round-robin to ``nq_regimes`` (each question in ONE regime, so
    grouped CV never sees it twice); same-topic and multi-hop rows keep their own distractors.

    Args:
        paths: JSONL(.gz) files.
        split: ``train`` (default), ``eval`` or ``all``.
        nq_regimes: Regimes for NQ-open pools.
        n_docs: NQ documents per context, or a ``(low, high)`` range drawn per question.
        limit: At most this many contexts per file.
        seed: Seed of every choice.
        embedder: MiniLM override for the dense regimes.
        nq_limit: At most this many contexts from an NQ-open pool (overrides ``limit`` for it).

    Returns:
        The contexts, file by file.

    Example:
        >>> training_contexts(["nq.jsonl", "hotpot.jsonl"], split="train")  # doctest: +SKIP
    """
    from ctxcomp.training.qa import read_jsonl

    out: list[QAContext] = []
    for path in paths:
        rows = read_jsonl(path)
        if not rows:
            continue
        kind = data_kind(rows[0])
        if kind == "nq":
            per = [
                nq_contexts(rows, regime=r, split=split, n_docs=n_docs, seed=seed, embedder=embedder)
                for r in nq_regimes
            ]
            mixed = [per[k % len(per)][k] for k in range(min(len(p) for p in per))]
            out += mixed[: nq_limit if nq_limit is not None else limit]
        elif kind == "same-topic":
            out += same_topic_contexts(rows, split=split, seed=seed, limit=limit)
        elif kind == "multihop":
            out += multihop_contexts(rows, split=split, limit=limit)
        else:
            ctxs = read_contexts(path)
            out += [c for c in ctxs if split == "all" or split_of(c.question) == split][:limit]
    return out


__all__ = [
    "BM25",
    "NQ_REGIMES",
    "REGIMES",
    "QAContext",
    "all_facts_kept",
    "data_kind",
    "fact_sentences",
    "multihop_contexts",
    "nq_contexts",
    "read_contexts",
    "same_topic_contexts",
    "sentence_labels",
    "training_contexts",
]
