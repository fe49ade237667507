"""Training examples: multi-document contexts from QA data, and their cached probe features.

Each training question gets a multi-document context: its gold passage plus hard distractors
(MiniLM nearest neighbours among OTHER questions' passages that contain no answer), shuffled with
a fixed seed. Questions are split by a hash of their text (``train`` / ``eval``), so the shipped
probes never see the benchmark's eval questions. :func:`extract` runs one truncated prefill per
question (resumable: features are cached per question, keyed by model, data and prompt).

Example:
    >>> ex = QAExample("Who?", ("Ann",), (Document("a", "Ann did it."),), 0)
    >>> ex.gold_index
    0
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.features import SentenceContext
from ctxcomp.compressors.probe import ProbeFeatures, Prober, PromptTemplate
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.models.probed import ProbedLM
from ctxcomp.text.split import split_documents
from ctxcomp.training.qa import has_answer, passage, split_of
from ctxcomp.types import Document


@dataclass(frozen=True)
class QAExample:
    """A question with its multi-document context.

    Attributes:
        question: The question.
        answers: Gold answers.
        docs: Documents in context order.
        gold_index: Position of the gold passage (``-1`` if unknown).
    """

    question: str
    answers: tuple[str, ...]
    docs: tuple[Document, ...]
    gold_index: int


def build_examples(
    rows: Sequence[dict[str, Any]],
    *,
    split: str = "train",
    n_docs: int = 6,
    seed: int = 0,
    limit: int | None = None,
    embedder: Any = None,
) -> list[QAExample]:
    """Multi-document examples with hard distractors from NQ-style rows.

    Rows are ``{"question", "answers", "ctxs": [{"title", "text", ...}]}`` (the first ctx is the
    gold passage) or already built ``{"question", "answers", "docs": [str | {"id","text"}]}``.

    Args:
        rows: Parsed JSONL rows.
        split: ``"train"``, ``"eval"`` or ``"all"`` (by :func:`split_of`).
        n_docs: Documents per context (gold + ``n_docs - 1`` distractors).
        seed: Seed of the gold position.
        limit: Stop after this many examples.
        embedder: Embedder for hard negatives (default MiniLM).

    Returns:
        Examples in input order.

    Raises:
        InputError: A row lacks the needed fields.
    """
    if split not in ("train", "eval", "all"):
        raise ConfigError("split", f"unknown split {split!r}", "use train, eval or all")
    for i, r in enumerate(rows):
        if "question" not in r or "answers" not in r or ("ctxs" not in r and "docs" not in r):
            raise InputError(f"data[{i}]", "needs 'question', 'answers' and 'ctxs' or 'docs'", "fix the row")
    rng = random.Random(seed)
    chosen = [i for i, r in enumerate(rows) if split == "all" or split_of(r["question"]) == split]
    if limit is not None:
        chosen = chosen[:limit]
    out: list[QAExample] = []
    if all("docs" in rows[i] for i in chosen):
        for i in chosen:
            r = rows[i]
            docs = tuple(
                Document(str(j), d)
                if isinstance(d, str)
                else Document(str(d.get("id", j)), d["text"], d.get("metadata") or {})
                for j, d in enumerate(r["docs"])
            )
            out.append(QAExample(r["question"], tuple(r["answers"]), docs, -1))
        return out
    from ctxcomp.retrieval import resolve_embedder

    emb = resolve_embedder(embedder)
    passages = [passage(r["ctxs"][0]) for r in rows]
    pv = _cached_embed(emb, passages)  # [P, dim]
    qv = _cached_embed(emb, [r["question"] for r in rows])  # [Q, dim]
    for i in chosen:
        r = rows[i]
        sims = pv @ qv[i]  # [P]
        distract: list[int] = []
        for j in np.argsort(-sims, kind="stable"):
            j = int(j)
            if j == i or passages[j] == passages[i] or has_answer(passages[j], r["answers"]):
                continue
            distract.append(j)
            if len(distract) == n_docs - 1:
                break
        ctx_docs = [Document(f"p{j}", passages[j], {"gold": False}) for j in distract]
        pos = rng.randrange(len(ctx_docs) + 1)
        ctx_docs.insert(pos, Document(f"p{i}", passages[i], {"gold": True}))
        out.append(QAExample(r["question"], tuple(r["answers"]), tuple(ctx_docs), pos))
    return out


def _cached_embed(emb: Any, texts: list[str]) -> np.ndarray:
    from ctxcomp.models.loader import cache_dir

    key = hashlib.sha256((emb.id + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:16]
    f = cache_dir() / "embeddings" / f"{key}.npy"
    if f.is_file():
        return np.load(f)
    vec = np.asarray(emb.embed(texts), dtype=np.float32)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, vec)
    return vec


@dataclass
class ExtractedExample:
    """Cached per-question material for training and evaluation.

    Attributes:
        question: The question.
        probe: Attention features over every extracted layer.
        ctx: Sentence context for the other families.
        labels: ``[S]`` bool, sentence contains an answer.
        n_tokens_reader: ``[S]`` tokens per sentence under the compressor's reader tokenizer.
    """

    question: str
    probe: ProbeFeatures
    ctx: SentenceContext
    labels: np.ndarray
    n_tokens_reader: np.ndarray


def extract(
    lm: ProbedLM,
    examples: Sequence[QAExample],
    *,
    layers: Sequence[int],
    reader: Any = None,
    template: PromptTemplate | None = None,
    max_tokens: int = 8192,
    max_sentence_chars: int = 1000,
    cache: Path | None = None,
    progress: bool = True,
    focus: bool = False,
) -> list[ExtractedExample]:
    """Run the probe over every example (resumable via ``cache``).

    Args:
        lm: The proxy model holder.
        examples: The examples.
        layers: Layers to extract (all features a probe may use).
        reader: Token counter of the reader tokenizer (default: the proxy's).
        template: Prompt layout (default :class:`~ctxcomp.compressors.probe.PromptTemplate`).
        max_tokens: Longest prompt per prefill (longer contexts run in windows).
        max_sentence_chars: Longest sentence (see :func:`ctxcomp.text.split.split_spans`).
        cache: Folder of per-question ``.npz`` files; existing ones are reused.
        progress: Show a progress bar.
        focus: Use the answer-hint template.

    Returns:
        One extracted example per input, in order.

    Example:
        >>> extract(ProbedLM("gemma-3-270m"), examples, layers=range(12))  # doctest: +SKIP
    """
    template = template or PromptTemplate()
    counter = reader if reader is not None else lm.counter
    it: Iterable[QAExample] = examples
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(examples, desc="probe features", unit="q")
    out = []
    for ex in it:
        key = hashlib.sha256(
            json.dumps([ex.question, [d.text for d in ex.docs], list(layers), focus]).encode()
        ).hexdigest()[:20]
        f = cache / f"{key}.npz" if cache else None
        cands = split_documents(list(ex.docs), max_chars=max_sentence_chars)
        texts = cands.texts
        if f is not None and f.is_file():
            z = np.load(f)
            probe = ProbeFeatures(
                z["mass"], z["n_tokens"], tuple(int(x) for x in z["layers"]), 1, int(z["n_ctx"])
            )
            nread = z["n_read"]
        else:
            probe = Prober(lm, cands, template, max_tokens).features(ex.question, layers=layers, focus=focus)
            nread = np.array(counter.count_many(texts), dtype=np.int64)
            if f is not None:
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_suffix(".tmp.npz")
                np.savez_compressed(
                    tmp,
                    mass=probe.mass,
                    n_tokens=probe.n_tokens,
                    layers=np.array(probe.layers),
                    n_ctx=probe.n_context_tokens,
                    n_read=nread,
                )
                tmp.replace(f)
        labels = np.array([has_answer(t, ex.answers) for t in texts], dtype=bool)
        out.append(
            ExtractedExample(ex.question, probe, SentenceContext.of(ex.question, cands), labels, nread)
        )
    return out


__all__ = ["ExtractedExample", "QAExample", "build_examples", "extract"]
