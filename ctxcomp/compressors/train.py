"""Training probes (the Sentinel recipe) with a calibrated fusion of feature families.

1. **Data.** Each training question gets a multi-document context: its gold passage plus hard
   distractors (MiniLM nearest neighbours among OTHER questions' passages that contain no answer),
   shuffled with a fixed seed. Questions are split by a hash of their text (``train`` / ``eval``),
   so the shipped probes never see the benchmark's eval questions.
2. **Features.** One truncated prefill per question gives the attention features of every probe
   layer; the non-attention families are cheap. Features are cached to disk per question, keyed
   by model, data and prompt, so extraction is resumable.
3. **Model.** Positives are sentences containing an answer, negatives the other sentences of the
   same context. An L2 logistic regression, class-balanced, on standardised features; ``C`` and the
   number of selected heads are picked by grouped 5-fold CV on AUC (heads ranked by univariate AUC
   inside each training fold, in the manner of retrieval/QR heads).

Example:
    >>> split_of("who wrote hamlet?") in ("train", "eval")
    True
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import re
import string
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.features import (
    FAMILIES,
    DocVectors,
    SentenceContext,
    build_features,
    feature_names,
)
from ctxcomp.compressors.probe import ProbeFeatures
from ctxcomp.compressors.trained import TrainedProbe
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.types import Document

logger = logging.getLogger(__name__)


def normalize_answer(text: str) -> str:
    """Case- and punctuation-normalised text (SQuAD-style, articles dropped).

    Args:
        text: Any text.

    Returns:
        The normalised text.

    Example:
        >>> normalize_answer("The  Eiffel-Tower!")
        'eiffeltower'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCT = set(string.punctuation)


def has_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether ``text`` contains one of ``answers`` after normalisation.

    Args:
        text: Candidate text.
        answers: Gold answers.

    Returns:
        True on a match.

    Example:
        >>> has_answer("It was Wilhelm Conrad Röntgen.", ["wilhelm conrad röntgen"])
        True
    """
    t = normalize_answer(text)
    return any((a := normalize_answer(x)) and a in t for x in answers)


def split_of(question: str) -> str:
    """Deterministic split of a question: ``eval`` for one in five (by sha256), else ``train``.

    Args:
        question: Question text.

    Returns:
        ``"train"`` or ``"eval"``.
    """
    h = int(hashlib.sha256(question.encode()).hexdigest(), 16)
    return "eval" if h % 5 == 0 else "train"


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


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL or JSONL.gz file.

    Args:
        path: The file.

    Returns:
        One dict per non-empty line.

    Raises:
        InputError: Unreadable file or invalid JSON (with the line number).
    """
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    rows = []
    try:
        with opener(p, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise InputError(
                            f"{p}:{lineno}", f"invalid JSON ({err.msg})", "fix the line"
                        ) from err
    except OSError as err:
        raise InputError("--data", f"cannot read {p} ({err})", "pass an existing JSONL(.gz) file") from err
    return rows


def _passage(ctx: dict[str, Any]) -> str:
    return f"{ctx['title']}. {ctx['text']}" if ctx.get("title") else str(ctx["text"])


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
    passages = [_passage(r["ctxs"][0]) for r in rows]
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
    compressor: Any,
    examples: Sequence[QAExample],
    *,
    layers: Sequence[int],
    cache: Path | None = None,
    progress: bool = True,
    focus: bool = False,
) -> list[ExtractedExample]:
    """Run the probe over every example (resumable via ``cache``).

    Args:
        compressor: A :class:`ctxcomp.Compressor` (its proxy is used).
        examples: The examples.
        layers: Layers to extract (all features a probe may use).
        cache: Folder of per-question ``.npz`` files; existing ones are reused.
        progress: Show a progress bar.
        focus: Use the answer-hint template.

    Returns:
        One extracted example per input, in order.
    """
    compressor.load()
    compressor._layers = tuple(sorted(set(layers)))
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
        sp = compressor._split(list(ex.docs))
        texts = [s.text for s in sp.sentences]
        if f is not None and f.is_file():
            z = np.load(f)
            probe = ProbeFeatures(
                z["mass"], z["n_tokens"], tuple(int(x) for x in z["layers"]), 1, int(z["n_ctx"])
            )
            nread = z["n_read"]
        else:
            probe = compressor._probe(sp, ex.question, focus)
            nread = np.array(compressor.reader_tokens.count_many(texts), dtype=np.int64)
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
        sizes = np.bincount(np.asarray(sp.doc_of, dtype=np.int64), minlength=len(ex.docs))
        ctx = SentenceContext(
            ex.question,
            texts,
            list(sp.doc_of),
            [s.index for s in sp.sentences],
            sizes.tolist(),
            [d.text for d in ex.docs],
        )
        labels = np.array([has_answer(t, ex.answers) for t in texts], dtype=bool)
        out.append(ExtractedExample(ex.question, probe, ctx, labels, nread))
    return out


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half).

    Args:
        scores: ``[n]`` scores.
        labels: ``[n]`` bool labels.

    Returns:
        AUC, or NaN with a single class.

    Example:
        >>> auc(np.array([0.1, 0.9, 0.5]), np.array([False, True, False]))
        1.0
    """
    labels = labels.astype(bool)
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(scores)
    return float((r[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def _matrix(
    data: Sequence[ExtractedExample],
    families: Sequence[str],
    layers: Sequence[int],
    heads: Sequence[tuple[int, int]],
    embedder: Any,
    doc_vectors: DocVectors = "embed",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, gs = [], [], []
    for g, ex in enumerate(data):
        probe = _restrict(ex.probe, layers)
        xs.append(
            build_features(
                ex.ctx, probe, families=families, heads=heads, embedder=embedder, doc_vectors=doc_vectors
            )
        )
        ys.append(ex.labels)
        gs.append(np.full(len(ex.labels), g))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def _restrict(probe: ProbeFeatures, layers: Sequence[int]) -> ProbeFeatures:
    idx = [probe.layers.index(li) for li in layers]
    return ProbeFeatures(
        probe.mass[idx], probe.n_tokens, tuple(layers), probe.n_windows, probe.n_context_tokens
    )


def rank_heads(data: Sequence[ExtractedExample], layers: Sequence[int]) -> list[tuple[int, int]]:
    """All ``(layer, head)`` pairs of ``layers`` by mean per-question AUC of their lift, best first.

    Args:
        data: Extracted examples.
        layers: Candidate layers.

    Returns:
        Ranked pairs.
    """
    from scipy.stats import rankdata

    total: np.ndarray | None = None
    count = 0
    n_heads = 0
    for ex in data:
        y = ex.labels
        npos, nneg = int(y.sum()), int((~y).sum())
        if npos == 0 or nneg == 0:
            continue
        lift = _restrict(ex.probe, layers).lift()  # [L, H, S]
        n_heads = lift.shape[1]
        flat = lift.reshape(-1, lift.shape[-1])  # [L*H, S]
        r = rankdata(flat, axis=1)  # [L*H, S]
        aucs = (r[:, y].sum(1) - npos * (npos + 1) / 2) / (npos * nneg)  # [L*H]
        total = aucs if total is None else total + aucs
        count += 1
    if total is None:
        return []
    mean = total / count
    pairs = [(li, h) for li in layers for h in range(n_heads)]
    return [pairs[i] for i in sorted(range(len(pairs)), key=lambda i: (-float(mean[i]), pairs[i]))]


class CachedEmbedder:
    """Memoises embeddings across the many CV refits of one training run (pass one to several fits).

    Args:
        inner: The embedder to wrap.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.id = getattr(inner, "id", "embedder")
        self.memo: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, computing only the ones not seen before.

        Args:
            texts: Strings.

        Returns:
            ``[n, dim]`` embeddings.
        """
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            for t, v in zip(missing, np.asarray(self.inner.embed(missing)), strict=True):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])


def fit_probe(
    data: Sequence[ExtractedExample],
    *,
    model_spec: str,
    model_id: str,
    weights_sha256: str | None,
    layers: Sequence[int],
    families: Sequence[str] = FAMILIES,
    embedder: Any = None,
    c_grid: Sequence[float] = (0.01, 0.1, 1.0),
    k_grid: Sequence[int] = (0, 16, 48),
    folds: int = 5,
    query_positions: int = 1,
    focus: bool = False,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    depths: Sequence[int] | None = None,
    depth_tolerance: float = 0.005,
    doc_vectors: DocVectors = "embed",
) -> TrainedProbe:
    """Fit a probe on extracted examples, choosing ``C``, the head count and the depth by grouped CV AUC.

    The depth is the deepest layer the probe reads: the proxy's forward pass stops after it, so a
    shallower probe is proportionally cheaper. Of the candidate ``depths``, the shallowest whose
    CV AUC is within ``depth_tolerance`` of the best is chosen (accuracy first, then speed).

    Args:
        data: Extracted examples (at least ``folds`` questions with a positive).
        model_spec: Proxy spec, recorded in the file.
        model_id: Proxy id.
        weights_sha256: Proxy weights hash.
        layers: Layers the probe may read.
        families: Feature families to use.
        embedder: Embedder for the ``embedding`` family.
        c_grid: Inverse regularisation strengths tried.
        k_grid: Numbers of selected heads tried (0: per-layer means only).
        folds: CV folds (grouped by question); 0 or 1 fits the first grid point without CV.
        query_positions: Probe rows used in extraction.
        focus: Whether extraction used the answer-hint template.
        seed: Seed of the fold assignment.
        meta: Extra fields stored in the file.
        depths: Candidate deepest layers (each restricts ``layers`` to those <= it); ``None`` uses
            the deepest of ``layers`` only.
        depth_tolerance: CV AUC a shallower depth may give up against the best depth.
        doc_vectors: Document vectors of the ``embedding`` family (see :func:`build_features`).

    Returns:
        The fitted probe.

    Raises:
        InputError: Too few usable questions.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    usable = [ex for ex in data if ex.labels.any() and not ex.labels.all()]
    if len(usable) < max(folds, 2):
        raise InputError(
            "data",
            f"only {len(usable)} questions have both answer and non-answer sentences",
            f"provide at least {folds}",
        )
    if "embedding" in families and not isinstance(embedder, CachedEmbedder):
        from ctxcomp.retrieval import resolve_embedder

        embedder = CachedEmbedder(resolve_embedder(embedder))
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(usable)) % max(folds, 1)
    use_att = "attention" in families
    grid_k = list(k_grid) if use_att else [0]
    uses_layers = use_att or "doc_attention" in families
    all_layers = sorted(layers)
    # Candidate deepest layers; ``None`` (no depth to choose) when no family reads layers.
    candidates: list[int | None] = [None]
    if uses_layers:
        deep = sorted({d for d in (depths or [all_layers[-1]]) if d >= all_layers[0]})
        if not deep:
            raise InputError(
                "depths", f"no candidate depth is >= the first layer {all_layers[0]}", "pass deeper ones"
            )
        candidates = [*deep]

    def cv_grid(lays: list[int]) -> dict[tuple[float, int], list[float]]:
        results: dict[tuple[float, int], list[float]] = {}
        if folds <= 1:  # no model selection: the single grid point, no CV estimate
            results[(c_grid[0], grid_k[0])] = [float("nan")]
        for f in range(folds if folds > 1 else 0):
            tr = [ex for ex, fo in zip(usable, fold_of, strict=True) if fo != f]
            te = [ex for ex, fo in zip(usable, fold_of, strict=True) if fo == f]
            ranked = rank_heads(tr, lays) if use_att else []
            for k in grid_k:
                heads = ranked[:k]
                xtr, ytr, _ = _matrix(tr, families, lays, heads, embedder, doc_vectors)
                xte, yte, gte = _matrix(te, families, lays, heads, embedder, doc_vectors)
                scaler = StandardScaler().fit(xtr)
                for c in c_grid:
                    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
                    lr.fit(scaler.transform(xtr), ytr)
                    s = lr.decision_function(scaler.transform(xte))
                    per_q = [auc(s[gte == g], yte[gte == g]) for g in np.unique(gte)]
                    results.setdefault((c, k), []).append(float(np.nanmean(per_q)))
        return results

    def best_of(results: dict[tuple[float, int], list[float]]) -> tuple[tuple[float, int], float]:
        return max(
            ((key, float(np.mean(v))) for key, v in results.items()),
            key=lambda kv: (kv[1], -kv[0][1], -kv[0][0]),
        )

    per_depth: list[dict[str, Any]] = []
    for d in candidates:
        lays = [li for li in all_layers if d is None or li <= d]
        res = cv_grid(lays)
        (c_d, k_d), auc_d = best_of(res)
        per_depth.append({"deepest": d, "layers": lays, "C": c_d, "k_heads": k_d, "auc": auc_d, "grid": res})
    top = max(r["auc"] for r in per_depth)
    chosen = next(
        (r for r in per_depth if not np.isfinite(top) or r["auc"] >= top - depth_tolerance), per_depth[-1]
    )
    layers = chosen["layers"] if uses_layers else list(layers)
    best_c, best_k, cv, results = chosen["C"], chosen["k_heads"], chosen["auc"], chosen["grid"]
    heads = rank_heads(usable, layers)[:best_k] if use_att else []
    x, y, _ = _matrix(usable, families, layers, heads, embedder, doc_vectors)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=best_c, class_weight="balanced", max_iter=2000).fit(scaler.transform(x), y)
    from ctxcomp import __version__

    all_meta = {
        "cv": {
            "auc": cv if folds > 1 else None,
            "C": best_c,
            "k_heads": best_k,
            "folds": folds,
            "grid": [
                {"C": c, "k_heads": k, "auc": float(np.mean(v))} for (c, k), v in sorted(results.items())
            ]
            if folds > 1
            else [],
        },
        "depth": {
            "chosen": chosen["deepest"],
            "tolerance": depth_tolerance,
            "candidates": [
                {"deepest": r["deepest"], "auc": r["auc"] if folds > 1 else None} for r in per_depth
            ],
        },
        "doc_vectors": doc_vectors,
        "training": {"n_questions": len(usable), "n_sentences": len(y), "n_positive": int(y.sum())},
        "ctxcomp_version": __version__,
        **(meta or {}),
    }
    kept_layers = tuple(layers) if use_att or "doc_attention" in families else ()
    return TrainedProbe(
        path=None,
        model_spec=model_spec,
        model_id=model_id,
        weights_sha256=weights_sha256,
        layers=kept_layers,
        heads=tuple(heads),
        families=tuple(families),
        feature_names=tuple(feature_names(families, kept_layers, heads)),
        mean=scaler.mean_.astype(np.float64),
        scale=scaler.scale_.astype(np.float64),
        coef=lr.coef_[0].astype(np.float64),
        intercept=float(lr.intercept_[0]),
        query_positions=query_positions,
        focus=focus,
        meta=all_meta,
    )


def train_probe(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    n_questions: int = 500,
    n_docs: int = 6,
    layers: Sequence[int] | None = None,
    families: Sequence[str] = FAMILIES,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
    embedder: str | None = None,
    depths: Sequence[int] | None = None,
    doc_vectors: DocVectors = "embed",
) -> TrainedProbe:
    """Train a probe for a proxy and write it as JSON (the ``ctxcomp train-probe`` command).

    Args:
        model: Proxy model spec.
        data: NQ-style JSONL(.gz) (see :func:`build_examples`).
        out: Output probe JSON path.
        split: Question split to train on.
        n_questions: Number of training questions.
        n_docs: Documents per training context.
        layers: Layers to read (default: the preset's extraction layers, or the lower two thirds).
        families: Feature families.
        seed: Seed for positions and folds.
        progress: Progress bars.
        command: The command line, recorded for reproducibility.
        embedder: Embedder id for hard negatives and the ``embedding`` family (default MiniLM);
            recorded in the probe so scoring uses the same one.
        depths: Candidate deepest layers, chosen by CV (see :func:`fit_probe`). Default: the last
            extraction layer of each quarter of ``layers`` (features are extracted once, for all).
        doc_vectors: ``"embed"`` (each document embedded whole; the default: 1-1.6 points higher
            CV AUC on the shipped probes) or ``"mean"`` (mean of its sentence vectors: one MiniLM
            pass over the sentences only, faster). See :func:`build_features`.

    Returns:
        The trained probe (also written to ``out``).

    Example:
        >>> train_probe("qwen2.5-coder-0.5b-instruct", "nq.jsonl.gz", "probe.json")  # doctest: +SKIP
    """
    from ctxcomp.api import Compressor
    from ctxcomp.config import CompressionConfig
    from ctxcomp.models.loader import cache_dir

    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ConfigError("families", f"unknown families {sorted(unknown)}", f"choose from {list(FAMILIES)}")
    t0 = time.perf_counter()
    rows = read_jsonl(data)
    data_sha = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    from ctxcomp.retrieval import resolve_embedder

    emb = resolve_embedder(embedder)
    examples = build_examples(rows, split=split, n_docs=n_docs, seed=seed, limit=n_questions, embedder=emb)
    comp = Compressor(CompressionConfig(proxy_model=model, scorer="attention")).load()
    n_layers = int(comp._model.config.get_text_config().num_hidden_layers)
    if layers is None:
        layers = default_extraction_layers(model, n_layers)
    layers = sorted({li + n_layers if li < 0 else li for li in layers})
    src = comp._source
    key = hashlib.sha256(
        json.dumps(
            [
                src.model_id,
                src.weights_sha256,
                data_sha,
                split,
                n_docs,
                seed,
                list(layers),
                comp.template.__dict__,
            ]
        ).encode()
    ).hexdigest()[:16]
    extracted = extract(
        comp, examples, layers=layers, cache=cache_dir() / "features" / key, progress=progress
    )
    if depths is None:
        depths = sorted({layers[max(0, round(q * len(layers)) - 1)] for q in (0.25, 0.5, 0.75, 1.0)})
    probe = fit_probe(
        extracted,
        model_spec=model,
        model_id=src.model_id,
        weights_sha256=src.weights_sha256,
        layers=layers,
        families=families,
        seed=seed,
        embedder=emb,
        depths=depths,
        doc_vectors=doc_vectors,
        meta={
            "embedder": emb.id,
            "template": comp.template.__dict__,
            "data": {
                "path": Path(data).name,
                "sha256": data_sha,
                "split": split,
                "n_docs": n_docs,
                "n_questions_requested": n_questions,
                "seed": seed,
            },
            "command": command,
            "train_seconds": round(time.perf_counter() - t0, 1),
        },
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(probe.to_dict(), indent=1))
    return probe


def default_extraction_layers(model: str, n_layers: int) -> list[int]:
    """Layers a probe reads by default: up to two thirds of the depth (early exit after them).

    Args:
        model: Proxy spec.
        n_layers: Its depth.

    Returns:
        Layer indices.

    Example:
        >>> default_extraction_layers("x", 24)[-1]
        15
    """
    return list(range(0, (2 * n_layers) // 3))
