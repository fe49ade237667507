"""LangChain integration on the tiny random proxy: metadata, immutability, async, classic + standard tests."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

import ctxcomp
from ctxcomp import CompressionConfig
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.integrations.langchain import CtxcompCompressor, CtxcompReorder, CtxcompRetriever

DOCS = [
    Document(
        "The Eiffel Tower is in Paris. Paris is the capital of France. It has many museums.",
        metadata={"source": "a", "nested": {"tags": ["x"]}},
        id="paris",
    ),
    Document(
        "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901. He was German.",
        metadata={"n": 2},
    ),
    Document("Question: who wrote Hamlet? Answer: William Shakespeare wrote it. It is a tragedy."),
]

CORPUS = [
    ctxcomp.Document(f"d{i}", text, {"row": i})
    for i, text in enumerate(
        [
            "The Eiffel Tower is in Paris. Paris is the capital of France.",
            "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901. He was German.",
            "William Shakespeare wrote Hamlet. It is a tragedy in five acts.",
            "Tokyo is the capital of Japan. It is a very large city.",
            "The Nile is a long river. It flows north into the Mediterranean Sea.",
            "Numbers like 3.14 and 42 appear here. The year 2024 was a leap year.",
        ]
    )
]


@pytest.fixture(scope="module")
def config(tiny_qwen: Path) -> CompressionConfig:
    return CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention")


@pytest.fixture(scope="module")
def comp(config: CompressionConfig) -> CtxcompCompressor:
    return CtxcompCompressor(config=config, ratio=0.5)


@pytest.fixture(scope="module")
def index() -> Any:
    pytest.importorskip("faiss")
    from ctxcomp.retrieval import FaissIndex, HashingEmbedder

    return FaissIndex.build(CORPUS, HashingEmbedder(dim=64), kind="flat", progress=False)


def test_metadata_kept_and_scores_added(comp: CtxcompCompressor) -> None:
    out = comp.compress_documents(DOCS, "What is the capital of France?")
    assert 0 < len(out) <= len(DOCS)
    by_text = {d.page_content: d for d in DOCS}
    for d in out:
        src = next(s for s in DOCS if s.id == d.id) if d.id else None
        if src is None:  # unnamed input: find it by its kept sentences
            src = next(s for s in by_text.values() if d.page_content.split(".")[0] in s.page_content)
        meta = {k: v for k, v in d.metadata.items() if k not in ("ctxcomp_score", "ctxcomp_sentences")}
        assert meta == src.metadata
        sents = d.metadata["ctxcomp_sentences"]
        assert sents and d.metadata["ctxcomp_score"] == max(s["score"] for s in sents)
        for s in sents:
            assert set(s) == {"index", "start", "end", "score"}
            assert src.page_content[s["start"] : s["end"]] in d.page_content
    assert out[0].id == "paris" or all(d.id != "paris" for d in out)


def test_inputs_never_mutated(comp: CtxcompCompressor) -> None:
    before = copy.deepcopy(DOCS)
    out = comp.compress_documents(DOCS, "Who won the Nobel Prize?")
    assert before == DOCS
    assert all(d is not s for d in out for s in DOCS)
    for d in out:
        if d.id == "paris":
            d.metadata["nested"]["tags"].append("changed")
    assert before == DOCS


def test_empty_input_loads_nothing(config: CompressionConfig) -> None:
    fresh = CtxcompCompressor(config=config)
    assert fresh.compress_documents([], "q?") == []
    assert asyncio.run(fresh.acompress_documents([], "q?")) == []
    assert not fresh.compressor.proxy.loaded
    with pytest.raises(InputError, match="query"):
        fresh.compress_documents([], " ")


def test_nothing_kept_documents_dropped(comp: CtxcompCompressor) -> None:
    out = comp.compress_documents(DOCS, "Who wrote Hamlet?", budget=8)
    assert len(out) < len(DOCS)
    assert all(d.metadata["ctxcomp_sentences"] for d in out)


def test_ids_positional_and_duplicates(comp: CtxcompCompressor) -> None:
    docs = [Document("One fact here. Two facts here.", id="1"), Document("Three facts. Four facts.")]
    out = comp.compress_documents(docs, "facts?", ratio=1.0)
    assert [d.id for d in out] == ["1", None]
    assert [d.page_content for d in out] == [d.page_content for d in docs]
    with pytest.raises(InputError, match="duplicate id"):
        comp.compress_documents([Document("A.", id="x"), Document("B.", id="x")], "q?")
    with pytest.raises(InputError, match=r"documents\[0\]"):
        comp.compress_documents(["plain string"], "q?")  # type: ignore[list-item]


def test_async_is_concurrent_safe(comp: CtxcompCompressor) -> None:
    queries = ["capital of France?", "Nobel Prize in Physics?", "Who wrote Hamlet?", "museums?"]
    expected = [comp.compress_documents(DOCS, q) for q in queries]

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(comp.acompress_documents(DOCS, q) for q in queries)))

    assert asyncio.run(run()) == expected


def test_async_does_not_block_loop(config: CompressionConfig) -> None:
    comp = CtxcompCompressor(config=config, ratio=0.5)

    async def run() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(tick())
        await comp.acompress_documents(DOCS, "capital?")  # first call also loads the model
        task.cancel()
        return ticks

    assert asyncio.run(run()) > 5


def test_bad_fields_rejected(config: CompressionConfig, index: Any) -> None:
    with pytest.raises(ConfigError, match=r"CtxcompCompressor\.temperature.*valid fields are"):
        CtxcompCompressor(config=config, temperature=0.1)
    with pytest.raises(InputError, match="both were given"):
        CtxcompCompressor(budget=10, ratio=0.5)
    with pytest.raises(InputError, match="ratio"):
        CtxcompCompressor(ratio=1.5)
    with pytest.raises(ConfigError, match="strategy"):
        CtxcompReorder(strategy="sideways")
    with pytest.raises(ConfigError, match="index"):
        CtxcompRetriever(index=object())
    with pytest.raises(ConfigError, match=r"CtxcompRetriever\.k"):
        CtxcompRetriever(index=index, k=0)
    with pytest.raises(ConfigError, match="Extra inputs"):
        CtxcompReorder(key="x")


def test_reorder_strategies() -> None:
    docs = [Document(str(i), metadata={"ctxcomp_score": s}) for i, s in enumerate([0.1, 0.9, 0.5, 0.7, 0.3])]
    before = copy.deepcopy(docs)
    out = CtxcompReorder().transform_documents(docs)
    assert [d.page_content for d in out] == ["1", "2", "0", "4", "3"]  # ranks 1,3,5 ... 4,2
    assert docs == before
    assert [d.page_content for d in CtxcompReorder(strategy="none").transform_documents(docs)] == list(
        "01234"
    )
    rel = [Document(str(i), metadata={"relevance_score": s}) for i, s in enumerate([0.2, 0.8, 0.5])]
    assert [d.page_content for d in CtxcompReorder().transform_documents(rel)] == ["1", "0", "2"]
    plain = [Document(str(i)) for i in range(4)]  # retrieval rank
    assert [d.page_content for d in asyncio.run(CtxcompReorder().atransform_documents(plain))] == [
        "0",
        "2",
        "3",
        "1",
    ]
    with pytest.raises(InputError, match=r"documents\[1\]\.metadata\['ctxcomp_score'\]"):
        CtxcompReorder().transform_documents(
            [
                Document("a", metadata={"ctxcomp_score": 1.0}),
                Document("b", metadata={"ctxcomp_score": "high"}),
            ]
        )


def test_reorder_passes_texts_query_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctxcomp.integrations.langchain as lc

    calls: list[dict[str, Any]] = []

    def fake(name: str, scores: list[float], **kw: Any) -> list[int]:
        calls.append({"name": name, "scores": scores, **kw})
        return list(range(len(scores)))[::-1]

    monkeypatch.setattr(lc, "reorder", fake)
    docs = [
        Document("alpha", metadata={"ctxcomp_score": 0.2}),
        Document("beta", metadata={"ctxcomp_score": 0.9}),
    ]
    tr = CtxcompReorder(options={"profile": "p.json"})
    assert [d.page_content for d in tr.transform_documents(docs, query="q?")] == ["beta", "alpha"]
    out = asyncio.run(tr.atransform_documents(docs))
    assert [d.page_content for d in out] == ["beta", "alpha"]
    assert calls[0] == {
        "name": "u_shape",
        "scores": [0.2, 0.9],
        "docs": ["alpha", "beta"],
        "profile": "p.json",
        "query": "q?",
    }
    assert "query" not in calls[1]


def test_retriever_search_then_compress(index: Any, config: CompressionConfig) -> None:
    retriever = CtxcompRetriever(index=index, k=3, config=config, ratio=1.0)
    out = retriever.invoke("Who wrote Hamlet?")
    assert len(out) == 3
    for d in out:
        src = next(c for c in CORPUS if c.id == d.id)
        assert d.page_content == src.text
        assert d.metadata["row"] == src.metadata["row"]
        assert {"ctxcomp_retrieval_score", "ctxcomp_score", "ctxcomp_sentences"} <= set(d.metadata)
    assert len(retriever.invoke("Who wrote Hamlet?", k=1)) == 1
    small = retriever.invoke("Who wrote Hamlet?", budget=10)
    assert sum(len(d.page_content) for d in small) < sum(len(d.page_content) for d in out)
    assert asyncio.run(retriever.ainvoke("Who wrote Hamlet?")) == out


class _FixedRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.docs)


def test_inside_contextual_compression_retriever(comp: CtxcompCompressor) -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    retriever = classic.ContextualCompressionRetriever(
        base_compressor=comp, base_retriever=_FixedRetriever(docs=DOCS)
    )
    out = retriever.invoke("What is the capital of France?")
    assert out == list(comp.compress_documents(DOCS, "What is the capital of France?"))
    assert asyncio.run(retriever.ainvoke("What is the capital of France?")) == out
    assert DOCS[0].metadata == {"source": "a", "nested": {"tags": ["x"]}}


try:
    from langchain_tests.integration_tests import RetrieversIntegrationTests
except ImportError:  # pragma: no cover - langchain-tests not installed
    RetrieversIntegrationTests = None


if RetrieversIntegrationTests is not None:
    # pytest-asyncio runs in strict mode here: mark the class so the suite's async test runs; its
    # sync tests inherit the mark, which is harmless.
    @pytest.mark.asyncio
    @pytest.mark.filterwarnings("ignore:.*marked with '@pytest.mark.asyncio' but it is not an async")
    class TestCtxcompRetrieverStandard(RetrieversIntegrationTests):
        """LangChain's standard retriever suite (offline: hashing embedder + tiny proxy)."""

        params: ClassVar[dict[str, Any]] = {}

        @pytest.fixture(autouse=True)
        def _bind(self, index: Any, config: CompressionConfig) -> None:
            # ratio=1.0 keeps every sentence, so the k-documents contract is exact.
            type(self).params = {"index": index, "config": config, "ratio": 1.0}

        @property
        def retriever_constructor(self) -> type[CtxcompRetriever]:
            return CtxcompRetriever

        @property
        def retriever_constructor_params(self) -> dict[str, Any]:
            return dict(self.params)

        @property
        def retriever_query_example(self) -> str:
            return "What is the capital of France?"
