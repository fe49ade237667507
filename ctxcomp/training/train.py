"""``ctxcomp train-probe``: train a probe for a proxy on contexts of several retrieval regimes.

The recipe (the shipped probes were made this way; ``docs/probes.md`` has the exact commands):

1. **Data.** Every file given with ``--data`` is built by its kind
   (:func:`ctxcomp.training.contexts.training_contexts`): NQ-open questions dealt to the dense,
   lexical, mixed and random distractor regimes (4-20 documents), same-topic single-hop contexts
   and multi-hop contexts with sentence-level supporting facts; train split only.
2. **Features.** One truncated prefill per context records the attention of the last position and
   of every question token, and pooled hidden states; cached per question (resumable, shared with
   the benchmarks).
3. **Fit.** :func:`ctxcomp.training.fit.fit_probe`: a pairwise ranking model by default (pairs of
   a supporting sentence and a distractor of the same context, half of them from the same
   document), sources weighted equally, ``C``/heads/depth chosen by grouped CV.

Example:
    >>> train_probe("gemma-3-270m", ["benchmarks/data/nq-open-dev.jsonl"], "probe.json")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxcomp.compressors.features import FAMILIES, PREFILL_FAMILIES, DocVectors
from ctxcomp.compressors.probe import PromptTemplate
from ctxcomp.compressors.trained import TrainedProbe
from ctxcomp.errors import ConfigError
from ctxcomp.training.contexts import NQ_REGIMES, training_contexts
from ctxcomp.training.examples import extract, features_cache
from ctxcomp.training.fit import default_extraction_layers, fit_probe

#: Feature families of a new probe by default (every family; see docs/probes.md for the ablations).
DEFAULT_FAMILIES = FAMILIES


def default_hidden_layers(layers: Sequence[int]) -> tuple[int, ...]:
    """Pooled hidden layers by default: the middle, three quarters and the end of the probe depth.

    Args:
        layers: The probe layers (sorted).

    Returns:
        Layer indices.

    Example:
        >>> default_hidden_layers(range(12))
        (5, 8, 11)
    """
    deepest = max(layers)
    return tuple(sorted({deepest // 2, (3 * deepest + 1) // 4, deepest}))


def train_probe(
    model: str,
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    split: str = "train",
    n_questions: int = 600,
    n_docs: int | tuple[int, int] = (4, 20),
    nq_regimes: Sequence[str] = NQ_REGIMES,
    layers: Sequence[int] | None = None,
    hidden_layers: Sequence[int] | None = None,
    families: Sequence[str] = DEFAULT_FAMILIES,
    learner: str = "pairwise",
    within_doc: float = 0.5,
    balance: bool = True,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
    embedder: str | None = None,
    depths: Sequence[int] | None = None,
    doc_vectors: DocVectors = "embed",
    reader: str | None = None,
) -> TrainedProbe:
    """Train a probe for a proxy and write it as JSON (the ``ctxcomp train-probe`` command).

    Args:
        model: Proxy model spec.
        data: One or more JSONL(.gz) files (NQ-open rows, same-topic rows, HotpotQA-style rows or
            contexts; see :func:`ctxcomp.training.contexts.data_kind`).
        out: Output probe JSON path.
        split: Question split to train on.
        n_questions: NQ-open contexts (the other kinds use all their train questions).
        n_docs: NQ documents per context, or a ``(low, high)`` range.
        nq_regimes: Distractor regimes NQ questions are dealt to.
        layers: Layers to read (default: the lower two thirds of the proxy).
        hidden_layers: Pooled hidden layers (default: :func:`default_hidden_layers`).
        families: Feature families.
        learner: ``pairwise`` or ``logistic``.
        within_doc: Share of within-document negatives per positive (``pairwise``).
        balance: Weight each data source equally.
        seed: Seed of every choice.
        progress: Progress bars.
        command: The command line, recorded for reproducibility.
        embedder: Embedder id for the dense regimes and the ``embedding`` family (default MiniLM);
            recorded in the probe so scoring uses the same one.
        depths: Candidate deepest layers, chosen by CV (default: the end of each quarter of ``layers``).
        doc_vectors: ``"embed"`` (each document embedded whole) or ``"mean"`` (mean of its sentence vectors).
        reader: Reader tokenizer whose per-sentence counts are cached with the features (default:
            the proxy's; share the benchmarks' cache by passing theirs).

    Returns:
        The trained probe (also written to ``out``).

    Raises:
        ConfigError: Unknown families.
    """
    from ctxcomp.models.probed import ProbedLM
    from ctxcomp.retrieval import resolve_embedder
    from ctxcomp.training.embeddings import CachedEmbedder

    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ConfigError("families", f"unknown families {sorted(unknown)}", f"choose from {list(FAMILIES)}")
    t0 = time.perf_counter()
    paths = [Path(data)] if isinstance(data, (str, Path)) else [Path(p) for p in data]
    emb = CachedEmbedder(resolve_embedder(embedder))
    contexts = training_contexts(
        paths,
        split=split,
        nq_regimes=nq_regimes,
        n_docs=n_docs,
        nq_limit=n_questions,
        seed=seed,
        embedder=emb,
    )
    lm = ProbedLM(model).load()
    template = PromptTemplate()
    n_layers = lm.num_layers
    if layers is None:
        layers = default_extraction_layers(model, n_layers)
    layers = sorted({li + n_layers if li < 0 else li for li in layers})
    hidden = tuple(hidden_layers) if hidden_layers is not None else default_hidden_layers(layers)
    counter = lm.counter
    if reader is not None:
        from ctxcomp.models.loader import load_tokenizer
        from ctxcomp.text.tokens import TokenCounter

        counter = TokenCounter(load_tokenizer(reader), reader)
    prefill = PREFILL_FAMILIES & set(families)
    extracted = extract(
        lm,
        contexts,
        layers=layers,
        groups=("last", "query"),
        hidden_layers=hidden,
        reader=counter,
        template=template,
        cache=features_cache(lm, counter.name),
        progress=progress,
    )
    if depths is None and prefill:
        depths = sorted({layers[max(0, round(q * len(layers)) - 1)] for q in (0.25, 0.5, 0.75, 1.0)})
    src = lm.source
    data_meta: list[dict[str, Any]] = [
        {"path": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in paths
    ]
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
        hidden_layers=hidden,
        learner=learner,
        within_doc=within_doc,
        balance=balance,
        meta={
            "embedder": emb.id,
            "template": template.__dict__,
            "data": {
                "files": data_meta,
                "split": split,
                "n_docs": list(n_docs) if isinstance(n_docs, tuple) else n_docs,
                "nq_regimes": list(nq_regimes),
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


__all__ = ["DEFAULT_FAMILIES", "default_hidden_layers", "train_probe"]
