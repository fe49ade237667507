"""TokenCounter: the backend fast path counts exactly what the tokenizer's own call counts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from ctxcomp.text.tokens import TokenCounter


def test_fast_path_matches_call(tiny_qwen: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    counter = TokenCounter(tok)
    texts = ["The Eiffel Tower is in Paris.", "", "  x  ", "东京是日本的首都。", "a\n\nb 😀"]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    assert counter.count_many(texts) == [len(x) if t else 0 for x, t in zip(ids, texts, strict=True)]
    assert counter._fast is not None, "a fast tokenizer should use its backend"

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.text(max_size=80), min_size=1, max_size=6))
    def prop(batch: list[str]) -> None:
        ids = tok(batch, add_special_tokens=False)["input_ids"]
        want = [len(x) if t else 0 for x, t in zip(ids, batch, strict=True)]
        assert counter.count_many(batch) == want
        assert [counter.count(t) for t in batch] == want

    prop()


class _Disagreeing:
    """A tokenizer whose backend miscounts: the counter must stay on ``__call__``."""

    name_or_path = "disagreeing"

    def __init__(self) -> None:
        wrong = [SimpleNamespace(ids=[0])]
        self.backend_tokenizer = SimpleNamespace(encode_batch_fast=lambda texts, **_: wrong * len(texts))

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, Any]:
        return {"input_ids": [t.split() for t in texts]}


def test_disagreeing_backend_is_not_used() -> None:
    counter = TokenCounter(_Disagreeing())
    assert counter.count_many(["one two three", "four"]) == [3, 1]
    assert counter._fast is None
