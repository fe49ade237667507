"""The reader LLM as the attention-based reorderers see it: attention per document slot.

:class:`Reader` wraps a :class:`~ctxcomp.models.probed.ProbedLM` (its own, or the compressor's
proxy when reader and proxy are the same model, so it is never loaded twice).
:meth:`Reader.slot_attention` is one truncated prefill of ``[documents ; question]``;
:func:`calibrated_scores` is the found-in-the-middle calibration (attention minus the attention
content-free dummy documents of the same lengths receive).

Example:
    >>> prompt, cs = slot_prompt("Who?", ["A.", "B."])
    >>> prompt.endswith("Question: Who?\\nAnswer:"), int(cs.max())
    (True, 1)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ctxcomp.compressors.probe import PromptTemplate
from ctxcomp.models.loader import ModelSource
from ctxcomp.models.probed import ProbedLM, SegmentedPrompt

#: Prompt layout shared by calibration, the attention reorderers and the position benchmark. The
#: last token (the ``:`` of ``Answer:``) is the answer position whose attention is measured.
READER_TEMPLATE = PromptTemplate(
    head="Answer the question using the documents below. Reply with a short answer.\n\n",
    question="Question: {q}",
    focus_hint="\nAnswer:",
)

#: Filler tokenised into content-free dummy documents (found-in-the-middle baseline).
DUMMY_FILLER = " This placeholder text carries no information."


def slot_prompt(
    query: str, docs: Sequence[str], template: PromptTemplate = READER_TEMPLATE
) -> tuple[str, np.ndarray]:
    """Lay out ``[documents ; question]`` and map each character to its document slot.

    Each slot covers its header (``Document [n]: ``) and its text; everything else maps to -1.

    Args:
        query: The question.
        docs: Document texts in slot order.
        template: The prompt layout.

    Returns:
        ``(prompt, char_slot)`` with ``char_slot[c]`` the slot of character ``c`` or -1.

    Example:
        >>> prompt, cs = slot_prompt("Who?", ["A.", "B."])
        >>> prompt.endswith("Question: Who?\\nAnswer:"), int(cs.max())
        (True, 1)
    """
    parts = [template.head]
    pos = len(template.head)
    spans: list[tuple[int, int]] = []
    for i, text in enumerate(docs):
        header = template.doc_header.format(n=i + 1)
        parts += [header, text, template.doc_sep]
        spans.append((pos, pos + len(header) + len(text)))
        pos += len(header) + len(text) + len(template.doc_sep)
    parts.append(template.tail(query, focus=True))
    prompt = "".join(parts)
    char_slot = np.full(len(prompt), -1, dtype=np.int64)
    for i, (a, b) in enumerate(spans):
        char_slot[a:b] = i
    return prompt, char_slot


# ---------------------------------------------------------------------------------------------- reader
class Reader:
    """The reader LLM, loaded lazily, for attention-based placement and calibration.

    Build it from a model spec (loaded on first use; float32 on CPU) or around a
    :class:`~ctxcomp.models.probed.ProbedLM` that is already in use (the
    :class:`~ctxcomp.Compressor` shares its proxy this way, so it is never loaded twice).

    Args:
        spec: Model spec (preset name, directory, ``.gguf`` file or hub id) or a model holder.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for a model loaded here.
        dtype: ``auto``, ``float32``, ``float16`` or ``bfloat16`` for a model loaded here.
        backend: Probe kernel backend (``auto``, ``torch``, ``triton``) for a model loaded here.
        template: Prompt layout.

    Example:
        >>> r = Reader("gemma-3-270m")  # doctest: +SKIP
        >>> r.doc_attention("Who?", ["Ann did it.", "Bob slept."]).round(2)  # doctest: +SKIP
        array([0.7, 0.3], dtype=float32)
    """

    def __init__(
        self,
        spec: str | ProbedLM,
        *,
        device: str = "auto",
        dtype: str = "auto",
        backend: str = "auto",
        template: PromptTemplate = READER_TEMPLATE,
    ) -> None:
        self.lm = (
            spec
            if isinstance(spec, ProbedLM)
            else ProbedLM(spec, device=device, dtype=dtype, backend=backend)
        )
        self.spec = self.lm.spec
        self.template = template
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()

    # ----------------------------------------------------------------- identity and loading
    @property
    def source(self) -> ModelSource:
        """The model's :class:`~ctxcomp.models.loader.ModelSource` (resolved without loading weights)."""
        return self.lm.source

    @property
    def model_id(self) -> str:
        """Stable id of the reader (preset name, file or directory name, hub id)."""
        return self.lm.model_id

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the reader's weights, when known."""
        return self.lm.weights_sha256

    def load(self) -> Reader:
        """Load the model and tokenizer now (otherwise the first prefill does).

        Returns:
            ``self``.
        """
        self.lm.load()
        return self

    @property
    def model(self) -> Any:
        """The loaded causal LM."""
        return self.lm.model

    @property
    def tokenizer(self) -> Any:
        """The reader's tokenizer."""
        return self.lm.tokenizer

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return self.lm.num_layers

    # ----------------------------------------------------------------- attention
    def slot_attention(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Attention of the answer position to each document slot, per layer (one prefill).

        Args:
            query: The question.
            docs: Document texts in slot order.

        Returns:
            ``[L, K]`` float32: per layer, the head-averaged share of context attention of the
            prompt's last token that falls in each slot (each row sums to 1).

        Example:
            >>> Reader("gemma-3-270m").slot_attention("Who?", ["A.", "B."]).shape  # doctest: +SKIP
            (18, 2)
        """
        key = (query, tuple(docs))
        with self._memo_lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit
        k = len(docs)
        n_layers = self.num_layers
        if k == 0:
            return np.zeros((n_layers, 0), dtype=np.float32)
        prompt, char_slot = slot_prompt(query, docs, self.template)
        (res,) = self.lm.prefill([SegmentedPrompt(prompt, char_slot, k)], layers=range(n_layers), m=1)
        arr = res.mass["last"].mean(axis=1).astype(np.float32)  # [L, K]
        with self._memo_lock:
            self._memo[key] = arr
            while len(self._memo) > 16:
                self._memo.popitem(last=False)
        return arr

    def doc_attention(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Attention each document receives from the answer position, averaged over layers and heads.

        Args:
            query: The question.
            docs: Document texts in slot order.

        Returns:
            ``[K]`` shares summing to 1 (empty for no documents).

        Example:
            >>> Reader("gemma-3-270m").doc_attention("Who?", ["A.", "B."]).sum()  # doctest: +SKIP
            1.0
        """
        return self.slot_attention(query, docs).mean(axis=0) if docs else np.zeros(0, dtype=np.float32)

    def __repr__(self) -> str:
        return f"Reader({self.spec!r})"


def dummy_documents(tokenizer: Any, docs: Sequence[str], filler: str = DUMMY_FILLER) -> list[str]:
    """Content-free stand-ins with the same token lengths as ``docs`` (empty stays empty).

    Args:
        tokenizer: The reader's tokenizer.
        docs: The real documents.
        filler: Neutral text repeated to length.

    Returns:
        One dummy text per document.

    Example:
        >>> dummy_documents(tok, ["Paris is in France."])  # doctest: +SKIP
        [' This placeholder text']
    """
    base = tokenizer(filler, add_special_tokens=False)["input_ids"]
    out = []
    for d in docs:
        n = len(tokenizer(d, add_special_tokens=False)["input_ids"]) if d else 0
        if n == 0:
            out.append("")
            continue
        ids = (base * (n // len(base) + 1))[:n]
        out.append(tokenizer.decode(ids).strip() or filler.strip())
    return out


def calibrated_scores(reader: Reader, query: str, docs: Sequence[str]) -> np.ndarray:
    """Found-in-the-middle calibrated relevance: attention minus its positional baseline.

    The baseline is the attention that content-free dummy documents of the same token lengths,
    at the same slots, receive for the same question (Hsieh et al., 2024). Two prefills; usable as a
    reranking score (higher is more relevant).

    Args:
        reader: The reader.
        query: The question.
        docs: Document texts in their current order.

    Returns:
        ``[K]`` calibrated scores (float64).

    Example:
        >>> calibrated_scores(Reader("gemma-3-270m"), "Who?", ["Ann did.", "Rain fell."])  # doctest: +SKIP
        array([ 0.21, -0.21])
    """
    if not docs:
        return np.zeros(0)
    raw = reader.doc_attention(query, docs).astype(np.float64)  # [K]
    base = reader.doc_attention(query, dummy_documents(reader.tokenizer, docs)).astype(np.float64)  # [K]
    return raw - base


__all__ = ["DUMMY_FILLER", "READER_TEMPLATE", "Reader", "calibrated_scores", "dummy_documents", "slot_prompt"]
