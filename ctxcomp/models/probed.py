"""The model holder: a causal LM with its tokenizer, identity and lock, and the probed prefill.

:class:`ProbedLM` is the one place that loads a proxy or reader model (preset, local directory,
``.gguf`` file or hub id) and runs it. :meth:`ProbedLM.prefill` runs truncated, probed prefills:
each prompt comes with a character -> segment map (a segment is a sentence, a document slot, ...)
and the result is, per probe layer and query head, the share of the last ``m`` positions'
attention that falls in each segment, renormalised over segment tokens. The compressor, the
position :class:`~ctxcomp.compressors.reader.Reader`, probe training and the benchmarks all go
through it.

Example:
    >>> lm = ProbedLM("gemma-3-270m", device="cpu")  # nothing loads until first use
    >>> lm.loaded
    False
    >>> prompt = SegmentedPrompt.from_spans("A. B. Who?", [(0, 2), (3, 5)])
    >>> prompt.num_segments, prompt.char_segments.tolist()[:6]
    (2, [0, 0, -1, 1, 1, -1])
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctxcomp.errors import ConfigError
from ctxcomp.models.attention import register_attention, run_probe, token_segments
from ctxcomp.models.loader import ModelSource
from ctxcomp.text.tokens import TokenCounter


@dataclass(frozen=True)
class SegmentedPrompt:
    """A prompt and the segment each of its characters belongs to.

    Attributes:
        text: The prompt.
        char_segments: ``[C]`` int64 segment id of every character, ``-1`` outside any segment.
        num_segments: Number of segments (ids are ``0 .. num_segments - 1``).
        query_span: ``(start, end)`` characters of the question, for the ``"query"`` probe-row group.
    """

    text: str
    char_segments: np.ndarray
    num_segments: int
    query_span: tuple[int, int] | None = None

    @classmethod
    def from_spans(
        cls, text: str, spans: Sequence[tuple[int, int]], query_span: tuple[int, int] | None = None
    ) -> SegmentedPrompt:
        """Build from character spans, span ``i`` being segment ``i``.

        Args:
            text: The prompt.
            spans: ``(start, end)`` character offsets, one per segment.
            query_span: Characters of the question, if the ``"query"`` group is wanted.

        Returns:
            The prompt.

        Example:
            >>> SegmentedPrompt.from_spans("ab", [(1, 2)]).char_segments.tolist()
            [-1, 0]
        """
        seg = np.full(len(text), -1, dtype=np.int64)  # [C]
        for i, (a, b) in enumerate(spans):
            seg[a:b] = i
        return cls(text, seg, len(spans), query_span)


#: Probe-row groups :meth:`ProbedLM.prefill` knows: the prompt's last ``m`` tokens, and every token
#: of the question (:attr:`SegmentedPrompt.query_span`).
ROW_GROUPS = ("last", "query")


@dataclass(frozen=True)
class PrefillResult:
    """What one probed prefill measured for one prompt.

    Attributes:
        mass: ``{group: [L, H, S]}`` attention share of each segment, per probe layer (in the order
            asked) and query head, averaged over the group's probe rows; each ``(layer, head)`` sums
            to 1 over segments (attention to tokens outside segments is renormalised away).
        hidden: ``{layer: [S, D]}`` mean hidden state of each segment's tokens after that layer.
        group_hidden: ``{layer: {group: [D]}}`` mean hidden state over each group's rows.
        segment_tokens: ``[S]`` number of prompt tokens assigned to each segment.
        n_tokens: Prompt length in tokens.
    """

    mass: dict[str, np.ndarray]
    segment_tokens: np.ndarray
    n_tokens: int
    hidden: dict[int, np.ndarray] = field(default_factory=dict)
    group_hidden: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other values unchanged.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        A concrete device.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bfloat16 on CUDA, float32 elsewhere (bf16 is slow on most CPUs).

    Args:
        dtype: ``auto``, ``float32``, ``float16`` or ``bfloat16``.
        device: The concrete device.

    Returns:
        A concrete dtype name.

    Example:
        >>> resolve_dtype("auto", "cpu")
        'float32'
    """
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


class ProbedLM:
    """A causal LM loaded by spec, with its tokenizer, identity and lock, running probed prefills.

    Loading is lazy (first use or :meth:`load`) and happens once; one instance is safe to share
    between threads (prefills are serialised by :attr:`lock`).

    Args:
        spec: Model spec: an offline preset name, a local directory, a ``.gguf`` file or a hub id.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), ``float32``, ``float16``, ``bfloat16``.
        backend: Probe kernel backend (``auto``, ``torch``, ``triton``).

    Example:
        >>> lm = ProbedLM("gemma-3-270m").load()  # doctest: +SKIP
        >>> p = SegmentedPrompt.from_spans("Paris is in France. Who?", [(0, 19)])
        >>> lm.prefill([p], layers=(5,), m=1)[0].mass.shape  # doctest: +SKIP
        (1, 4, 1)
    """

    def __init__(
        self, spec: str, *, device: str = "auto", dtype: str = "auto", backend: str = "auto"
    ) -> None:
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(
                "model spec", f"must be a non-empty str, got {spec!r}", "pass a preset or a path"
            )
        self.spec = spec
        self.backend = backend
        self.lock = threading.RLock()
        self._device_request = device
        self._dtype_request = dtype
        self._device = ""
        self._model: Any = None
        self._tokenizer: Any = None
        self._source: ModelSource | None = None
        self._counter: TokenCounter | None = None

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, source: ModelSource, *, backend: str = "auto") -> ProbedLM:
        """Hold an already loaded model (it must use a ``ctxcomp_*`` attention implementation).

        Args:
            model: The causal LM, in eval mode.
            tokenizer: Its fast tokenizer (with offsets).
            source: Its :class:`~ctxcomp.models.loader.ModelSource`.
            backend: Probe kernel backend.

        Returns:
            A loaded holder.

        Example:
            >>> lm = ProbedLM.wrap(model, tok, source)  # doctest: +SKIP
        """
        lm = cls(source.spec, backend=backend)
        lm._model, lm._tokenizer, lm._source = model, tokenizer, source
        lm._device = str(next(model.parameters()).device)
        return lm

    # ------------------------------------------------------------------ loading and identity
    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    def load(self) -> ProbedLM:
        """Load the model and tokenizer now (otherwise the first use does).

        Returns:
            ``self``.
        """
        with self.lock:
            if self._model is None:
                from ctxcomp.models.loader import load_causal_lm, load_tokenizer

                device = resolve_device(self._device_request)
                dtype = resolve_dtype(self._dtype_request, device)
                base = "sdpa"
                if (
                    device.startswith("cuda")
                    and dtype != "float32"
                    and importlib.util.find_spec("flash_attn") is not None
                ):
                    base = "flash_attention_2"
                model, source = load_causal_lm(
                    self.spec, device=device, dtype=dtype, attn_implementation=register_attention(base)
                )
                self._tokenizer = load_tokenizer(self.spec)
                self._source, self._device, self._model = source, device, model
        return self

    @property
    def source(self) -> ModelSource:
        """Where the model comes from, with its stable id and weights hash (resolved without loading)."""
        if self._source is None:
            from ctxcomp.models.loader import materialise

            self._source = materialise(self.spec)
        return self._source

    @property
    def model_id(self) -> str:
        """Stable id (preset name, file or directory name, hub id)."""
        return self.source.model_id

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights, when known."""
        return self.source.weights_sha256

    @property
    def device(self) -> str:
        """The device the model is on (loads it)."""
        self.load()
        return self._device

    @property
    def model(self) -> Any:
        """The loaded causal LM."""
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        self.load()
        return self._tokenizer

    @property
    def counter(self) -> TokenCounter:
        """Counts tokens with this model's tokenizer."""
        if self._counter is None:
            self._counter = TokenCounter(self.tokenizer, self.model_id)
        return self._counter

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return int(self.model.config.get_text_config().num_hidden_layers)

    # ------------------------------------------------------------------ the probed prefill
    def batch_tokens(self, requested: int | None = None) -> int:
        """Padded tokens per batched prefill: ``requested``, or the device's default (16k on CUDA;
        0 on CPU, where padding rows costs more than it saves: one prompt per prefill).

        Example:
            >>> ProbedLM.__new__(ProbedLM).batch_tokens(4096)
            4096
        """
        if requested is not None:
            return requested
        return 16384 if self.device.startswith("cuda") else 0

    def prefill(
        self,
        prompts: Sequence[SegmentedPrompt],
        *,
        layers: Sequence[int],
        m: int = 1,
        groups: Sequence[str] = ("last",),
        hidden_layers: Sequence[int] = (),
        batch_tokens: int | None = None,
    ) -> list[PrefillResult]:
        """Run truncated, probed prefills of ``prompts``, several to a (left-padded) batch.

        The forward pass stops after the deepest layer asked for; no logits are computed.
        Prompts of similar length share a batch of at most ``batch_tokens`` padded tokens; results
        equal one-prompt prefills up to float rounding.

        Args:
            prompts: The prompts with their character -> segment maps.
            layers: Probe layers (non-negative).
            m: Trailing prompt positions read by the ``"last"`` group (clipped to the prompt length).
            groups: Probe-row groups to read, from :data:`ROW_GROUPS`.
            hidden_layers: Layers whose outputs are pooled per segment (and per group).
            batch_tokens: Padded tokens per batch (default: 16k on CUDA, one prompt at a time on CPU).

        Returns:
            One :class:`PrefillResult` per prompt, in order.

        Example:
            >>> res = lm.prefill([p], layers=(3,), m=1)  # doctest: +SKIP
        """
        import torch

        from ctxcomp.models.attention import ProbeRow, install_hidden_hooks

        unknown = set(groups) - set(ROW_GROUPS)
        if unknown or not groups:
            raise ConfigError(
                "groups", f"unknown probe-row groups {sorted(unknown)}", f"use some of {ROW_GROUPS}"
            )
        lays, hid = tuple(layers), tuple(hidden_layers)
        if hid:
            install_hidden_hooks(self.model)
        if not prompts:
            return []
        enc = self.tokenizer([p.text for p in prompts], return_offsets_mapping=True, add_special_tokens=True)
        ids = [list(x) for x in enc["input_ids"]]
        segs = [
            token_segments(off, p.char_segments)
            for off, p in zip(enc["offset_mapping"], prompts, strict=True)
        ]
        batch_tokens = self.batch_tokens(batch_tokens)
        pad = self.tokenizer.pad_token_id
        pad = int(pad) if pad is not None else 0
        out: list[PrefillResult | None] = [None] * len(prompts)
        for batch in _length_buckets([len(x) for x in ids], batch_tokens):
            n = max(len(ids[i]) for i in batch)
            rows, mask = [], []
            for i in batch:
                shift = n - len(ids[i])
                seg = np.concatenate([np.full(shift, -1, dtype=np.int64), segs[i]])  # [N]
                rows.append(
                    ProbeRow(seg, prompts[i].num_segments, _row_groups(groups, prompts[i], enc, i, m, shift))
                )
                mask.append([0] * shift + [1] * len(ids[i]))
            x = torch.tensor(
                [[pad] * (n - len(ids[i])) + ids[i] for i in batch], device=self.device
            )  # [B, N]
            attn = torch.tensor(mask, device=self.device) if len(batch) > 1 else None  # [B, N]
            with self.lock:
                res = run_probe(
                    self.model,
                    x,
                    rows,
                    layers=lays,
                    backend=self.backend,
                    attention_mask=attn,
                    hidden_layers=hid,
                )
            for i, r in zip(batch, res, strict=True):
                seg = segs[i]
                counts = np.bincount(seg[seg >= 0], minlength=prompts[i].num_segments).astype(np.int64)  # [S]
                out[i] = PrefillResult(
                    mass={
                        g: np.stack([r.mass[li][k] for li in lays]) if lays else np.zeros((0, 0, 0))
                        for k, g in enumerate(groups)
                    },
                    segment_tokens=counts,
                    n_tokens=len(ids[i]),
                    hidden=r.hidden,
                    group_hidden={
                        li: {g: v[k] for k, g in enumerate(groups)} for li, v in r.group_hidden.items()
                    },
                )
        return [r for r in out if r is not None]

    def __repr__(self) -> str:
        return f"ProbedLM({self.spec!r}, loaded={self.loaded})"


def _length_buckets(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, at most ``batch_tokens`` padded tokens each."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def _row_groups(
    groups: Sequence[str], prompt: SegmentedPrompt, enc: Any, i: int, m: int, shift: int
) -> list[np.ndarray]:
    """Absolute (padded) positions of each probe-row group of prompt ``i``."""
    n = len(enc["input_ids"][i])
    out = []
    for g in groups:
        if g == "last":
            pos = np.arange(n - min(m, n), n)
        else:
            span = prompt.query_span
            offs = enc["offset_mapping"][i]
            pos = np.array(
                [
                    t
                    for t, (a, b) in enumerate(offs)
                    if span is not None and b > a and a < span[1] and b > span[0]
                ],
                dtype=np.int64,
            )
            if len(pos) == 0:
                pos = np.arange(n - 1, n)
        out.append(pos.astype(np.int64) + shift)
    return out
