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
from ctxcomp.training.embeddings import cached_embed
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
    pv = cached_embed(emb, passages)  # [P, dim]
    qv = cached_embed(emb, [r["question"] for r in rows])  # [Q, dim]
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


def features_cache(lm: ProbedLM, reader_name: str) -> Path:
    """The folder of cached prefill features for a proxy and reader tokenizer (per question inside).

    Shared by ``train-probe`` and the benchmarks, so features are extracted once.

    Args:
        lm: The proxy.
        reader_name: Name of the reader tokenizer (it counts the per-sentence reader tokens stored).

    Returns:
        The folder (not created).
    """
    from ctxcomp.models.loader import cache_dir

    src = lm.source
    key = hashlib.sha256(json.dumps([src.model_id, src.weights_sha256, reader_name]).encode()).hexdigest()
    return cache_dir() / "features" / f"regimes-{key[:12]}"


@dataclass
class ExtractedExample:
    """Cached per-question material for training and evaluation.

    Attributes:
        question: The question.
        probe: Prefill features over every extracted layer (and group / hidden layer).
        ctx: Sentence context for the other families.
        labels: ``[S]`` bool, sentence must be kept (holds an answer, or a supporting fact).
        n_tokens_reader: ``[S]`` tokens per sentence under the reader tokenizer.
        source: The example it came from (a :class:`QAExample` or a
            :class:`~ctxcomp.training.contexts.QAContext`).
    """

    question: str
    probe: ProbeFeatures
    ctx: SentenceContext
    labels: np.ndarray
    n_tokens_reader: np.ndarray
    source: Any = None


def extract(
    lm: ProbedLM,
    examples: Sequence[Any],
    *,
    layers: Sequence[int],
    groups: Sequence[str] = ("last",),
    hidden_layers: Sequence[int] = (),
    reader: Any = None,
    template: PromptTemplate | None = None,
    max_tokens: int = 8192,
    max_sentence_chars: int = 1000,
    cache: Path | None = None,
    progress: bool = True,
    focus: bool = False,
    only_cached: bool = False,
) -> list[ExtractedExample]:
    """Run the probe over every example (resumable via ``cache``).

    Args:
        lm: The proxy model holder.
        examples: :class:`QAExample` or :class:`~ctxcomp.training.contexts.QAContext` objects
            (contexts are labelled by their supporting facts when they have some).
        layers: Layers to extract (all features a probe may use).
        groups: Probe-row groups (``"last"``, ``"query"``).
        hidden_layers: Layers whose hidden states are pooled per sentence.
        reader: Token counter of the reader tokenizer (default: the proxy's).
        template: Prompt layout (default :class:`~ctxcomp.compressors.probe.PromptTemplate`).
        max_tokens: Longest prompt per prefill (longer contexts run in windows).
        max_sentence_chars: Longest sentence (see :func:`ctxcomp.text.split.split_spans`).
        cache: Folder of per-question ``.npz`` files; existing ones are reused.
        progress: Show a progress bar.
        focus: Use the answer-hint template.
        only_cached: Skip examples whose features are not cached yet (no prefill runs).

    Returns:
        One extracted example per input, in order (fewer with ``only_cached``).

    Example:
        >>> extract(ProbedLM("gemma-3-270m"), examples, layers=range(12))  # doctest: +SKIP
    """
    from ctxcomp.training.contexts import QAContext, sentence_labels

    template = template or PromptTemplate()
    counter = reader if reader is not None else lm.counter
    groups = ("last", *[g for g in groups if g != "last"])
    it: Iterable[Any] = examples
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(examples, desc="probe features", unit="q")
    out = []
    for ex in it:
        parts: list[Any] = [ex.question, [d.text for d in ex.docs], list(layers), focus]
        if groups != ("last",) or hidden_layers:
            parts += [list(groups), list(hidden_layers)]
        key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]
        f = cache / f"{key}.npz" if cache else None
        cands = split_documents(list(ex.docs), max_chars=max_sentence_chars)
        texts = cands.texts
        if f is not None and f.is_file():
            probe, nread = _load_npz(f)
        elif only_cached:
            continue
        else:
            probe = Prober(lm, cands, template, max_tokens).features(
                ex.question, layers=layers, focus=focus, groups=groups, hidden_layers=hidden_layers
            )
            nread = np.array(counter.count_many(texts), dtype=np.int64)
            if f is not None:
                _save_npz(f, probe, nread)
        if isinstance(ex, QAContext):
            labels = sentence_labels(ex, cands)
        else:
            labels = np.array([has_answer(t, ex.answers) for t in texts], dtype=bool)
        out.append(
            ExtractedExample(ex.question, probe, SentenceContext.of(ex.question, cands), labels, nread, ex)
        )
    return out


def _save_npz(f: Path, probe: ProbeFeatures, nread: np.ndarray) -> None:
    arrays: dict[str, Any] = {
        "mass": probe.mass,
        "n_tokens": probe.n_tokens,
        "layers": np.array(probe.layers),
        "n_ctx": probe.n_context_tokens,
        "n_read": nread,
    }
    for g, v in probe.group_mass.items():
        arrays[f"group_{g}"] = v
    for li, v in probe.hidden.items():
        arrays[f"hidden_{li}"] = v.astype(np.float16)
        for g, q in probe.query_hidden[li].items():
            arrays[f"qhidden_{li}_{g}"] = q
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(f)


def _load_npz(f: Path) -> tuple[ProbeFeatures, np.ndarray]:
    z = np.load(f)
    group_mass = {k.removeprefix("group_"): z[k] for k in z.files if k.startswith("group_")}
    hidden = {
        int(k.removeprefix("hidden_")): z[k].astype(np.float32) for k in z.files if k.startswith("hidden_")
    }
    query_hidden: dict[int, dict[str, np.ndarray]] = {}
    for k in z.files:
        if k.startswith("qhidden_"):
            li, g = k.removeprefix("qhidden_").split("_", 1)
            query_hidden.setdefault(int(li), {})[g] = z[k]
    probe = ProbeFeatures(
        z["mass"],
        z["n_tokens"],
        tuple(int(x) for x in z["layers"]),
        1,
        int(z["n_ctx"]),
        group_mass,
        hidden,
        query_hidden,
    )
    return probe, z["n_read"]


__all__ = ["ExtractedExample", "QAExample", "build_examples", "extract", "features_cache"]
