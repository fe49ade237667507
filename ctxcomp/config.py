"""Validated, immutable configuration.

Example:
    >>> from ctxcomp.config import CompressionConfig
    >>> cfg = CompressionConfig(scorer="attention", query_positions=4)
    >>> cfg.query_positions
    4
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ctxcomp.errors import ConfigError
from ctxcomp.registry import REORDERERS, SCORERS

#: The proxy used when none is given: an offline preset, so the default needs no network. Chosen
#: by benchmarks/quality.py (eval split, 100 questions, 20 documents): with their trained probes the
#: two presets tie on quality (answer recall 0.99/0.98 at 5x/10x for Gemma, 0.99/0.97 for Qwen) and
#: Gemma compresses 1.8x faster (10.5 vs 19.0 s per example on the benchmark's loaded CPU).
DEFAULT_PROXY = "gemma-3-270m"
#: The keep ratio used when neither ``budget`` nor ``ratio`` is passed.
DEFAULT_RATIO = 0.25
#: Default cap on the characters of one call (query + documents): ~50k tokens at ~4 characters a
#: token, which the default proxy prefills in about 2-3 minutes on a 2-core CPU (~300 tokens/s) and
#: in seconds on a GPU; ten times a typical 20-passage RAG context. Larger inputs get a named error
#: instead of running for an hour (a 5 MB document is ~1.25M tokens).
DEFAULT_MAX_INPUT_CHARS = 200_000

#: A scorer name: ``"auto"`` or a name registered in :data:`ctxcomp.registry.SCORERS`.
ScorerName = str
#: A reorder strategy name registered in :data:`ctxcomp.registry.REORDERERS`.
ReorderName = str


class CompressionConfig(BaseModel):
    """Everything that decides how a context is compressed.

    Two equal configs give identical results on identical inputs, and :func:`ctxcomp.compress`
    reuses one loaded :class:`~ctxcomp.Compressor` per distinct config.

    Example:
        >>> CompressionConfig(proxy_model="gemma-3-270m").proxy_model
        'gemma-3-270m'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy_model: str = DEFAULT_PROXY
    """Proxy LLM whose attention scores sentences: an offline preset name, a local directory,
    a ``.gguf`` file or a hub id."""

    reader_tokenizer: str | None = None
    """Tokenizer that counts the budget (the reader LLM's). ``None`` uses the proxy's tokenizer."""

    scorer: ScorerName = "auto"
    """``attention`` (Sentinel-style query-to-context attention), ``focus`` (AttentionRAG answer-hint
    focus token), ``probe`` (a trained probe; needs one for the proxy), ``auto`` (``probe`` when one
    ships for the proxy, else ``attention``) or any name added with
    :func:`ctxcomp.compressors.scorers.register_scorer`."""

    probe_path: str | None = None
    """A trained probe JSON (from ``ctxcomp train-probe``) for ``scorer="probe"``/``"auto"``. ``None``
    uses the probe shipped for the proxy, if any."""

    force_probe: bool = False
    """Use ``probe_path`` even if it was trained on another proxy (logs a warning)."""

    probe_layers: tuple[int, ...] | None = None
    """Decoder layers whose attention is read (negative indices count from the end). ``None`` uses
    the preset's tuned layers, or the upper half of the model for other models. The forward pass
    stops after the deepest of them."""

    query_positions: int = Field(default=1, ge=1, le=256)
    """How many trailing prompt positions (the end of the question) read the context."""

    null_query: bool = False
    """Subtract the attention a content-free question pays to each sentence (one extra prefill)."""

    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """Proxy weights dtype. ``auto``: bfloat16 on CUDA, float32 on CPU (bf16 is slow on most CPUs)."""

    max_proxy_tokens: int = Field(default=8192, ge=128)
    """Longest prompt given to the proxy in one prefill; longer contexts are split into windows of
    whole documents, each with the question."""

    kernel_backend: Literal["auto", "torch", "triton"] = "auto"
    """Implementation of the probe reduction (``auto``: Triton on CUDA when installed)."""

    reorder: ReorderName = "none"
    """Placement of kept documents (whole documents move; sentences keep their order): ``none`` keeps
    retrieval order; ``u_shape`` puts the best documents at both ends (ranks 1,3,5,... first, ...,4,2
    last); ``attnrank`` puts the rank-i document in the reader's i-th most attended slot (measured
    position profile); ``attention_sort`` sorts by the reader's attention, most attended last, twice;
    ``found_in_middle`` sorts by attention minus a dummy-document positional baseline, best last;
    or any name added with :func:`ctxcomp.compressors.reorder.register_reorderer`.
    See ``ctxcomp.compressors.reorder``."""

    reader_model: str | None = None
    """Reader LLM whose attention ``attention_sort``/``found_in_middle`` read and whose position
    profile ``attnrank`` uses (a model spec). ``None`` uses the proxy (the loaded model is reused)."""

    position_profile: str | None = None
    """Position profile JSON (from ``ctxcomp calibrate``) for ``attnrank``. ``None`` uses the profile
    shipped for the reader, if any (the offline presets have one)."""

    force_position_profile: bool = False
    """Use ``position_profile`` even if it was calibrated on another model (logs a warning)."""

    max_sentence_chars: int = Field(default=1000, ge=20)
    """Sentences longer than this are split at clause boundaries (then at whitespace)."""

    max_input_chars: int | None = Field(default=DEFAULT_MAX_INPUT_CHARS, ge=1)
    """Most characters one call may hold (query and documents together); more is an
    :class:`~ctxcomp.errors.InputError` naming ``docs`` before any work. ``None``: no limit. The default
    (:data:`DEFAULT_MAX_INPUT_CHARS`) keeps one call to a few minutes on a CPU."""

    prefill_batch_tokens: int | None = Field(default=None, ge=0)
    """Padded tokens per batched prefill: prompts of similar length (windows of one call, or of many
    calls in :meth:`~ctxcomp.Compressor.compress_batch`) share a forward pass up to this size.
    ``None``: 16384 on CUDA, ``0`` (one prompt per prefill) on CPU, where batching does not pay."""

    @field_validator(
        "proxy_model", "reader_tokenizer", "probe_path", "reader_model", "position_profile", mode="before"
    )
    @classmethod
    def _path_to_str(cls, v: Any) -> Any:
        # Model specs and file fields are strings in the frozen (hashable) config; accept any os.PathLike.
        return os.fspath(v) if isinstance(v, os.PathLike) else v

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, v: str) -> str:
        if v != "auto" and v not in SCORERS:
            raise ValueError(f"unknown scorer {v!r}; use one of {['auto', *SCORERS.names()]}")
        return v

    @field_validator("reorder")
    @classmethod
    def _known_reorder(cls, v: str) -> str:
        if v not in REORDERERS:
            raise ValueError(f"unknown reorder strategy {v!r}; use one of {REORDERERS.names()}")
        return v

    @field_validator("probe_layers")
    @classmethod
    def _layers_nonempty(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and len(v) == 0:
            raise ValueError("must name at least one layer, or be None for the default")
        return v

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")

    @field_validator("proxy_model")
    @classmethod
    def _spec_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a preset name, a directory, a .gguf file or a hub id")
        return v

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "CompressionConfig"
            fields = ", ".join(sorted(type(self).model_fields))
            fix = (
                f"remove it; valid fields are {fields}"
                if first["type"] == "extra_forbidden"
                else "see the field's documentation in ctxcomp.config.CompressionConfig"
            )
            raise ConfigError(f"CompressionConfig.{loc}", first["msg"], fix) from err
