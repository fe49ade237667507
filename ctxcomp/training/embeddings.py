"""Embedding caches for training and evaluation: on disk across runs, in memory across CV refits.

Example:
    >>> from ctxcomp.retrieval import HashingEmbedder
    >>> emb = CachedEmbedder(HashingEmbedder(8))
    >>> emb.embed(["a b", "a b"]).shape
    (2, 8)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def cached_embed(emb: Any, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, cached on disk under the ctxcomp cache (keyed by embedder and texts).

    Args:
        emb: An embedder (``id`` and ``embed``).
        texts: The texts.

    Returns:
        ``[n, dim]`` float32 embeddings.
    """
    from ctxcomp.models.loader import cache_dir

    key = hashlib.sha256((emb.id + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:16]
    f = cache_dir() / "embeddings" / f"{key}.npy"
    if f.is_file():
        return np.load(f)
    vec = np.asarray(emb.embed(texts), dtype=np.float32)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, vec)
    return vec


class CachedEmbedder:
    """Memoises embeddings across the many CV refits of one training run (pass one to several fits).

    Args:
        inner: The embedder to wrap.
        store: A ``.npz`` file that keeps the memo across runs (loaded now, written by :meth:`save`).
    """

    def __init__(self, inner: Any, store: Any = None) -> None:
        self.inner = inner
        self.id = getattr(inner, "id", "embedder")
        self.memo: dict[str, np.ndarray] = {}
        self.store = store
        self._loaded = 0
        if store is not None:
            from pathlib import Path

            path = Path(store)
            if path.is_file():
                z = np.load(path, allow_pickle=False)
                for t, v in zip(z["texts"].tolist(), z["vectors"], strict=True):
                    self.memo[str(t)] = v
                self._loaded = len(self.memo)

    def save(self) -> None:
        """Write the memo to ``store`` when it grew (no-op without a store)."""
        if self.store is None or len(self.memo) == self._loaded:
            return
        from pathlib import Path

        path = Path(self.store)
        path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.memo)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.array(texts, dtype=str), vectors=np.stack([self.memo[t] for t in texts]))
        tmp.replace(path)
        self._loaded = len(texts)

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


__all__ = ["CachedEmbedder", "cached_embed"]
