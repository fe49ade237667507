"""Helpers shared by the retrieval tests (fake embedders and compressor, synthetic data)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctxcomp.types import Document

TOPICS = [
    "Paris is the capital of France and sits on the Seine river.",
    "Berlin is the capital of Germany; the Spree flows through it.",
    "Mount Everest is the highest mountain above sea level.",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The mitochondria is the powerhouse of the cell.",
    "William Shakespeare wrote Hamlet, Macbeth and King Lear.",
    "Jane Austen wrote Pride and Prejudice in 1813.",
    "Python is a programming language created by Guido van Rossum.",
    "The Rust programming language focuses on memory safety.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The speed of light in vacuum is about 300,000 km per second.",
]


def make_docs(n: int = 36) -> list[Document]:
    return [
        Document(f"d{i}", f"{TOPICS[i % len(TOPICS)]} Note {i}.", {"n": i, "tags": ["t", str(i % 3)]})
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


class VectorEmbedder:
    """Embedder over fixed vectors: the text of a document is its row number; queries too."""

    def __init__(self, vectors: np.ndarray, embedder_id: str = "test/vectors") -> None:
        self.vectors = vectors  # [n, d]
        self.id = embedder_id
        self.dim = int(vectors.shape[1])

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        return self.vectors[[int(t) for t in texts]]  # [m, d]

    def embed_query(self, text: str) -> np.ndarray:
        return self.vectors[int(text)]  # [d]


def unit_vectors(n: int, d: int, seed: int, clusters: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if clusters:
        centers = rng.standard_normal((clusters, d))  # [c, d]
        x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, d))  # [n, d]
    else:
        x = rng.standard_normal((n, d))  # [n, d]
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)  # [n, d]


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ base.T  # [m, n]
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]  # [m, k]


class FakeCompressor:
    """Keeps the first sentence of each document; records its calls. Stands in for ctxcomp.Compressor."""

    def __init__(self, config: object = None) -> None:
        self.config = config
        self.calls: list[dict[str, object]] = []

    def compress(self, query, docs, *, budget=None, ratio=None):  # type: ignore[no-untyped-def]
        from ctxcomp.types import CompressedContext, CompressedDocument, ScoredSentence, Stats

        self.calls.append({"query": query, "ids": [d.id for d in docs], "budget": budget, "ratio": ratio})
        out_docs, sentences = [], []
        for d in docs:
            end = d.text.find(".") + 1 or len(d.text)
            s = ScoredSentence(d.id, 0, 0, end, d.text[:end], 1.0, len(d.text[:end].split()), True)
            sentences.append(s)
            out_docs.append(CompressedDocument(d.id, s.text, {**d.metadata, "ctxcomp_score": 1.0}, 1.0, (s,)))
        text = "\n\n".join(d.text for d in out_docs)
        total = sum(len(d.text.split()) for d in docs)
        kept = len(text.split())
        stats = Stats(
            total, kept, budget or kept, total / max(1, kept), {"total": 0.0}, "fake", "fake", "fake", 1
        )
        return CompressedContext(text, tuple(out_docs), tuple(sentences), stats)

    async def acompress(self, query, docs, *, budget=None, ratio=None):  # type: ignore[no-untyped-def]
        return self.compress(query, docs, budget=budget, ratio=ratio)
