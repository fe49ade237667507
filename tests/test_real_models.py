"""Real offline presets on real NQ data (slow: loads hundreds of MB of weights)."""

from __future__ import annotations

import re

import pytest

from ctxcomp import CompressionConfig, Compressor, Document


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def _nq_context(rows: list[dict], qi: int, n_docs: int) -> tuple[str, list[str], list[Document]]:
    row = rows[qi]
    others = [r for j, r in enumerate(rows) if j != qi][: n_docs - 1]
    docs = [
        Document(f"d{j}", f"{r['ctxs'][0]['title']}. {r['ctxs'][0]['text']}", {"gold": False})
        for j, r in enumerate(others)
    ]
    gold = row["ctxs"][0]
    docs.insert(n_docs // 2, Document("gold", f"{gold['title']}. {gold['text']}", {"gold": True}))
    return row["question"], row["answers"], docs


@pytest.mark.slow
def test_default_keeps_answer_at_ratio_0_2(nq_rows: list[dict]) -> None:
    comp = Compressor()  # the offline default
    question, answers, docs = _nq_context(nq_rows, 0, 20)
    ctx = comp.compress(question, docs, ratio=0.2)
    assert ctx.stats.proxy_model == "gemma-3-270m" and ctx.stats.scorer == "probe"
    assert ctx.stats.kept_tokens <= 0.2 * ctx.stats.original_tokens
    assert any(_norm(a) in _norm(ctx.text) for a in answers), (question, answers, ctx.text)
    gold = next(d for d in ctx.documents if d.id == "gold")
    assert gold.metadata["gold"] is True


@pytest.mark.slow
def test_qwen_preset_keeps_answer(nq_rows: list[dict]) -> None:
    comp = Compressor(CompressionConfig(proxy_model="qwen2.5-coder-0.5b-instruct"))
    question, answers, docs = _nq_context(nq_rows, 1, 10)
    ctx = comp.compress(question, docs, budget=150)
    assert 0 < ctx.stats.kept_tokens <= 150
    assert ctx.stats.proxy_model == "qwen2.5-coder-0.5b-instruct"
    assert ctx.stats.scorer == "probe"
    assert any(_norm(a) in _norm(ctx.text) for a in answers), (question, answers, ctx.text)
