"""Token counting with the reader's tokenizer: the unit every budget is expressed in.

Example:
    >>> class Chars:  # any object with an HF-style __call__ works
    ...     name_or_path = "chars"
    ...     def __call__(self, texts, add_special_tokens=False):
    ...         return {"input_ids": [list(t) for t in texts]}
    >>> TokenCounter(Chars()).count("abc")
    3
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_AGREEMENT_SAMPLES = (
    "Hello world.",
    "  leading spaces and trailing  ",
    "a\n\nb\nc",
    "东京是日本的首都。你好！",
    "Emoji 😀, numbers 3.14 and URLs https://example.org/x?y=1.",
    "Don't split 'quotes' — or dashes.",
)


class TokenCounter:
    """Counts tokens of strings without special tokens.

    With a ``transformers`` fast tokenizer, counts go straight to its Rust backend
    (``encode_batch_fast``: no offsets, no Python-side ``BatchEncoding``), several times faster
    than calling the tokenizer. The backend is used only after it has agreed with the tokenizer's
    own ``__call__`` on a fixed sample of awkward strings; otherwise counting stays on ``__call__``.

    Args:
        tokenizer: A ``transformers`` tokenizer (or anything callable the same way).
        name: Id reported in stats; defaults to the tokenizer's ``name_or_path``.
    """

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.name = name or str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
        self._fast: Callable[[list[str]], list[int]] | None = None
        self._checked = False

    def _slow(self, texts: list[str]) -> list[int]:
        return [len(x) for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _backend(self) -> Callable[[list[str]], list[int]] | None:
        if not self._checked:
            self._checked = True
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            encode = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)
            if encode is not None:

                def fast(texts: list[str]) -> list[int]:
                    return [len(e.ids) for e in encode(texts, add_special_tokens=False)]

                sample = list(_AGREEMENT_SAMPLES)
                try:
                    agrees = fast(sample) == self._slow(sample)
                except Exception:  # an exotic backend: stay on the tokenizer's own call
                    agrees = False
                self._fast = fast if agrees else None
        return self._fast

    def count(self, text: str) -> int:
        """Tokens in ``text``.

        Args:
            text: Any string.

        Returns:
            The count (0 for the empty string).
        """
        if not text:
            return 0
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each string, in one batched call.

        Args:
            texts: Strings.

        Returns:
            One count per string.
        """
        if not texts:
            return []
        batch = list(texts)
        fast = self._backend()
        counts = fast(batch) if fast is not None else self._slow(batch)
        return [c if t else 0 for c, t in zip(counts, batch, strict=True)]
