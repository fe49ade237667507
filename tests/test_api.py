"""compress()/Compressor on a tiny random proxy: invariants, bad input, windows, async, batch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctxcomp
from ctxcomp import CompressionConfig, Compressor, Document
from ctxcomp.errors import ConfigError, CtxcompError, InputError, UnknownModelError

DOCS = [
    Document(
        "a", "The Eiffel Tower is in Paris. Paris is the capital of France.", {"url": "https://a", "n": 1}
    ),
    Document("b", "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901. He was German."),
    Document("c", "东京是日本的首都。你好！ Emoji 😀 and numbers 3.14 are fine.\n- a bullet\n- another one"),
]


@pytest.fixture(scope="module")
def comp(tiny_qwen: Path) -> Compressor:
    return Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention", probe_layers=(1, 2)))


def check_invariants(
    ctx: ctxcomp.CompressedContext, docs: list[Document], budget: int, comp: Compressor
) -> None:
    by_id = {d.id: d for d in docs}
    for s in ctx.sentences:
        assert by_id[s.doc_id].text[s.start : s.end] == s.text
        if s.kept:
            assert s.text in ctx.text
    assert ctx.stats.kept_tokens <= budget
    assert comp.reader_tokens.count(ctx.text) == ctx.stats.kept_tokens
    for d in ctx.documents:
        src = by_id[d.id]
        assert {k: v for k, v in d.metadata.items() if k != "ctxcomp_score"} == src.metadata
        assert d.metadata["ctxcomp_score"] == d.score
        kept = [s for s in ctx.sentences if s.doc_id == d.id and s.kept]
        assert [s.index for s in d.sentences] == [s.index for s in kept]  # source order
    # Output text consists only of kept sentences and separators.
    rest = ctx.text
    for s in sorted(ctx.kept_sentences, key=lambda s: -len(s.text)):
        rest = rest.replace(s.text, "", 1)
    assert rest.strip() == ""


def test_compress_keeps_invariants(comp: Compressor) -> None:
    ctx = comp.compress("who won the first Nobel Prize in Physics?", DOCS, budget=30)
    check_invariants(ctx, DOCS, 30, comp)
    assert ctx.stats.ratio == pytest.approx(ctx.stats.original_tokens / ctx.stats.kept_tokens)
    assert set(ctx.stats.timings) >= {"split", "probe", "score", "prune", "reorder", "total"}
    assert ctx.stats.scorer == "attention"
    assert len(ctx.sentences) >= 6
    assert DOCS[0].metadata == {"url": "https://a", "n": 1}  # inputs never mutated


def test_deterministic(comp: Compressor) -> None:
    a = comp.compress("capital of France?", DOCS, ratio=0.4)
    b = comp.compress("capital of France?", DOCS, ratio=0.4)
    assert a.text == b.text
    assert [s.score for s in a.sentences] == [s.score for s in b.sentences]


def test_strings_get_positional_ids(comp: Compressor) -> None:
    ctx = comp.compress("q?", ["First doc. Second sentence.", "Other doc here."], ratio=1.0)
    assert {s.doc_id for s in ctx.sentences} == {"0", "1"}
    assert ctx.text == "First doc. Second sentence.\n\nOther doc here."


def test_ratio_one_keeps_everything(comp: Compressor) -> None:
    ctx = comp.compress("q?", DOCS, ratio=1.0)
    assert all(s.kept for s in ctx.sentences)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": -3}, "budget"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"budget": 10, "ratio": 0.5}, "budget/ratio"),
    ],
)
def test_bad_budget(comp: Compressor, kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        comp.compress("q?", DOCS, **kwargs)
    assert err.value.field == field
    assert "Fix:" in str(err.value)


@pytest.mark.parametrize("query", ["", "   ", None, 3])
def test_bad_query(comp: Compressor, query: object) -> None:
    with pytest.raises(InputError, match="query"):
        comp.compress(query, DOCS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "docs", [[1, 2], [{"text": "x"}], "a single string", [Document("x", "a"), Document("x", "b")]]
)
def test_bad_docs(comp: Compressor, docs: object) -> None:
    with pytest.raises(InputError, match="docs"):
        comp.compress("q?", docs)  # type: ignore[arg-type]


def test_empty_and_whitespace_docs(comp: Compressor) -> None:
    empty = comp.compress("q?", [])
    assert empty.text == "" and empty.sentences == () and empty.stats.ratio == 1.0
    ws = comp.compress("q?", ["   ", "\n\t"], ratio=0.5)
    assert ws.text == "" and ws.documents == ()
    mixed = comp.compress("q?", ["   ", "Real text here. More text."], ratio=1.0)
    assert mixed.text == "Real text here. More text."


def test_long_single_sentence(comp: Compressor) -> None:
    text = ("word" * 12 + " ") * 1050  # >50k characters, no sentence punctuation
    assert len(text) >= 50_000
    ctx = comp.compress("q?", [text], budget=2000)
    check_invariants(ctx, [Document("0", text)], 2000, comp)
    assert ctx.stats.kept_tokens > 0


def test_windows_make_scores_comparable(tiny_qwen: Path, tmp_path: Path) -> None:
    """With uniform attention every sentence's lift is exactly 1, however the windows are cut."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.zero_()
            layer.self_attn.q_proj.bias.zero_()
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_qwen).save_pretrained(tmp_path)
    docs = [f"Document number {i} says {'many words ' * (i + 1)}here. And more." for i in range(12)]
    one = Compressor(CompressionConfig(proxy_model=str(tmp_path), scorer="attention", probe_layers=(0,)))
    many = Compressor(
        CompressionConfig(
            proxy_model=str(tmp_path), scorer="attention", probe_layers=(0,), max_proxy_tokens=128
        )
    )
    a = one.compress("q?", docs, ratio=0.5)
    b = many.compress("q?", docs, ratio=0.5)
    assert a.stats.n_windows == 1 and b.stats.n_windows >= 3
    np.testing.assert_allclose([s.score for s in a.sentences], 1.0, atol=1e-4)
    np.testing.assert_allclose([s.score for s in b.sentences], 1.0, atol=1e-4)


def test_windows_cover_every_sentence(tiny_qwen: Path) -> None:
    c = Compressor(
        CompressionConfig(
            proxy_model=str(tiny_qwen), scorer="focus", probe_layers=(-1,), max_proxy_tokens=128
        )
    )
    docs = [f"Sentence {i} of a long document. " * 3 for i in range(40)]
    ctx = c.compress("what?", docs, budget=100)
    assert ctx.stats.n_windows > 1
    assert all(np.isfinite(s.score) for s in ctx.sentences)
    assert len({s.score for s in ctx.sentences}) > 1
    assert ctx.stats.kept_tokens <= 100


def test_batch_and_async(comp: Compressor) -> None:
    items = [("capital of France?", DOCS), {"query": "Nobel?", "docs": DOCS}]
    out = comp.compress_batch(items, ratio=0.5)
    assert [o.text for o in out] == [
        comp.compress(q, d, ratio=0.5).text for q, d in [("capital of France?", DOCS), ("Nobel?", DOCS)]
    ]
    res = asyncio.run(comp.acompress("capital of France?", DOCS, ratio=0.5))
    assert res.text == out[0].text
    with pytest.raises(InputError, match=r"items\[0\]"):
        comp.compress_batch([{"query": "x"}])
    mixed = comp.compress_batch(
        [{"query": "Nobel?", "docs": DOCS, "budget": 12}, {"query": " ", "docs": DOCS}, ("Nobel?", DOCS)],
        ratio=0.5,
        return_exceptions=True,
    )
    assert mixed[0].stats.budget == 12 and mixed[2].stats.budget < mixed[2].stats.original_tokens
    assert isinstance(mixed[1], InputError) and mixed[1].field == "query"


def test_u_shape_reorder(tiny_qwen: Path) -> None:
    c = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention", reorder="u_shape"))
    docs = [f"Doc {i} text. Another sentence {i}." for i in range(5)]
    ctx = c.compress("q?", docs, ratio=1.0)
    scores = [d.score for d in ctx.documents]
    assert scores[0] == max(scores) and scores[-1] == sorted(scores)[-2]


def test_module_function_caches_compressor(tiny_qwen: Path) -> None:
    cfg = CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention")
    a = ctxcomp.compress("q?", DOCS, ratio=0.5, config=cfg)
    b = ctxcomp.compress(
        "q?", DOCS, ratio=0.5, config=CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention")
    )
    assert a.text == b.text
    from ctxcomp.api import _cached

    assert _cached.cache_info().hits >= 1


def test_unknown_model_lists_presets() -> None:
    with pytest.raises(UnknownModelError, match="gemma-3-270m") as err:
        Compressor(CompressionConfig(proxy_model="no-such-model")).compress("q?", ["a."])
    assert isinstance(err.value, CtxcompError)


def test_probe_scorer_without_probe(tiny_qwen: Path) -> None:
    with pytest.raises(ConfigError, match="scorer"):
        Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="probe")).compress("q?", ["a."])


def test_bad_probe_layer(tiny_qwen: Path) -> None:
    with pytest.raises(ConfigError, match="probe_layers"):
        Compressor(CompressionConfig(proxy_model=str(tiny_qwen), probe_layers=(99,))).compress("q?", ["a."])


def test_config_accepts_paths(tmp_path: Path) -> None:
    cfg = CompressionConfig(proxy_model=tmp_path, probe_path=tmp_path / "p.json")
    assert cfg.proxy_model == str(tmp_path) and cfg.probe_path == str(tmp_path / "p.json")
    assert hash(cfg) == hash(
        CompressionConfig(proxy_model=str(tmp_path), probe_path=str(tmp_path / "p.json"))
    )


def test_import_is_light() -> None:
    code = (
        "import sys, ctxcomp, ctxcomp.kernels, ctxcomp.retrieval, ctxcomp.integrations; "
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'langchain_core', 'triton', "
        "'sentence_transformers', 'ray') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=0,
    max_size=120,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(_text, min_size=0, max_size=4),
    budget=st.integers(min_value=1, max_value=80),
    meta=st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
def test_invariants_property(comp: Compressor, texts: list[str], budget: int, meta: dict) -> None:
    docs = [Document(str(i), t, meta) for i, t in enumerate(texts)]
    a = comp.compress("what is it?", docs, budget=budget)
    check_invariants(a, docs, budget, comp)
    b = comp.compress("what is it?", docs, budget=budget)
    assert (a.text, a.sentences, a.documents) == (b.text, b.sentences, b.documents)


@pytest.mark.parametrize("kind", ["tiny_qwen", "tiny_gemma"])
def test_batched_prefills_give_the_unbatched_result(kind: str, request: pytest.FixtureRequest) -> None:
    """compress_batch runs every item's windows in shared padded prefills; results equal compress()."""
    path = str(request.getfixturevalue(kind))
    items = [
        ("capital of France?", DOCS),
        ("Nobel?", [*DOCS, "A much longer document. " * 30]),
        ("who?", ["Short."]),
        ("many windows?", [f"Sentence {i} of a long document. " * 3 for i in range(12)]),
    ]
    batched = Compressor(
        CompressionConfig(
            proxy_model=path, scorer="attention", prefill_batch_tokens=100_000, max_proxy_tokens=256
        )
    )
    single = Compressor(CompressionConfig(proxy_model=path, scorer="attention", max_proxy_tokens=256))
    got = batched.compress_batch(items, ratio=0.4)
    for (q, d), b in zip(items, got, strict=True):
        a = single.compress(q, d, ratio=0.4)
        assert [s.kept for s in a.sentences] == [s.kept for s in b.sentences]
        np.testing.assert_allclose([s.score for s in a.sentences], [s.score for s in b.sentences], atol=1e-4)
        assert a.text == b.text and a.stats.n_windows == b.stats.n_windows
