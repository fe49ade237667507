"""The server's parts on their own: placement rules, the rewrite, schemas, the batcher, the CLI flags."""

from __future__ import annotations

import asyncio
import copy
import importlib
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from ctxcomp import CompressionConfig, Compressor
from ctxcomp.cli import main
from ctxcomp.errors import InputError, MissingDependencyError
from ctxcomp.integrations.server import ServerSettings
from ctxcomp.integrations.server.batcher import Batcher, ShuttingDownError
from ctxcomp.integrations.server.chat import default_query, place_context, rewrite
from ctxcomp.integrations.server.schemas import CompressRequest, ContextField, parse_model
from ctxcomp.types import CompressedContext, Document, Stats

USER = {"role": "user", "content": "Who built it?"}


# --------------------------------------------------------------------------- placement
def test_context_goes_before_the_last_user_message() -> None:
    msgs = [{"role": "system", "content": "S"}, USER, {"role": "assistant", "content": "A"}, USER]
    out = place_context(msgs, "CTX")
    assert out == [msgs[0], USER, msgs[2], {"role": "system", "content": "CTX"}, USER]
    assert place_context([{"role": "system", "content": "S"}], "CTX")[-1] == {
        "role": "system",
        "content": "CTX",
    }
    assert place_context([USER], "") == [USER]  # nothing kept: nothing inserted


def test_placeholders_are_replaced_everywhere_and_inputs_never_mutated() -> None:
    msgs = [
        {"role": "system", "content": "{context} / {context}", "name": "x"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Q {context}"}, {"type": "image_url", "image_url": {}}],
        },
    ]
    before = copy.deepcopy(msgs)
    out = place_context(msgs, "C")
    assert msgs == before
    assert out[0] == {"role": "system", "content": "C / C", "name": "x"}
    assert out[1]["content"] == [{"type": "text", "text": "Q C"}, {"type": "image_url", "image_url": {}}]


def test_default_query_is_the_last_user_text() -> None:
    assert default_query([USER, {"role": "assistant", "content": "x"}]) == "Who built it?"
    parts = {
        "role": "user",
        "content": [{"type": "text", "text": "{context}"}, {"type": "text", "text": "Why?"}],
    }
    assert default_query([parts]) == "Why?"
    with pytest.raises(InputError, match=r"ctxcomp\.query"):
        default_query([{"role": "system", "content": "S"}])
    with pytest.raises(InputError, match=r"ctxcomp\.query"):
        default_query([{"role": "user", "content": "{context}"}])


# --------------------------------------------------------------------------- the rewrite
def _ctx(text: str) -> CompressedContext:
    stats = Stats(
        original_tokens=10,
        kept_tokens=3,
        budget=5,
        ratio=10 / 3,
        timings={},
        proxy_model="p",
        reader_tokenizer="r",
        scorer="attention",
        n_windows=1,
    )
    return CompressedContext(text=text, documents=(), sentences=(), stats=stats)


def test_rewrite_compresses_removes_the_field_and_keeps_the_rest() -> None:
    seen: list[Any] = []

    async def compress(
        q: str, docs: list[Document], budget: int | None, ratio: float | None
    ) -> CompressedContext:
        seen.append((q, [d.id for d in docs], budget, ratio))
        return _ctx("kept")

    body = {
        "model": "m",
        "messages": [USER],
        "n": 2,
        "ctxcomp": {"documents": ["a", {"id": "z", "text": "b"}]},
    }
    before = copy.deepcopy(body)
    out = asyncio.run(rewrite(body, compress))
    assert body == before
    assert out.body == {"model": "m", "messages": [{"role": "system", "content": "kept"}, USER], "n": 2}
    assert seen == [("Who built it?", ["0", "z"], None, None)]
    assert out.headers["x-ctxcomp-original-tokens"] == "10" and out.headers["x-ctxcomp-kept-tokens"] == "3"


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ({"documents": ["a"], "budget": 0}, "ctxcomp.budget"),
        ({"documents": ["a"], "ratio": "x"}, "ctxcomp.ratio"),
        ({"documents": [{"id": "a"}]}, "ctxcomp.documents[0].text"),
        ({"documents": ["a", {"id": "0", "text": "b"}]}, "ctxcomp.documents[1].id"),
        ({"docs": ["a"]}, "ctxcomp.documents"),
        ({"documents": ["a"], "query": 3}, "ctxcomp.query"),
        ({"documents": ["a"], "query": " "}, "ctxcomp.query"),
        ("a", "ctxcomp"),
    ],
)
def test_rewrite_names_the_bad_field(field: Any, where: str) -> None:
    async def compress(*args: Any) -> CompressedContext:
        raise AssertionError("not reached")

    body = {"model": "m", "messages": [USER], "ctxcomp": field}
    with pytest.raises(InputError) as info:
        asyncio.run(rewrite(body, compress, fail_closed=True))
    assert info.value.field == where
    out = asyncio.run(rewrite(body, compress))  # fail-open: forwarded, field removed
    assert (
        out.error is not None and out.headers["x-ctxcomp-error"] == "InputError" and "ctxcomp" not in out.body
    )


def test_rewrite_fail_open_on_a_compression_error() -> None:
    async def broken(*args: Any) -> CompressedContext:
        raise RuntimeError("boom")

    body = {"messages": [{"role": "user", "content": "Q? {context}"}], "ctxcomp": {"documents": ["A.", "B."]}}
    out = asyncio.run(rewrite(body, broken))
    assert out.headers["x-ctxcomp-error"] == "RuntimeError"
    assert out.body == {"messages": [{"role": "user", "content": "Q? A.\n\nB."}]}
    with pytest.raises(RuntimeError):
        asyncio.run(rewrite(body, broken, fail_closed=True))
    bad_messages = {"messages": "nope", "ctxcomp": {"documents": ["A."]}}
    assert asyncio.run(rewrite(bad_messages, broken)).body == {"messages": "nope"}


# --------------------------------------------------------------------------- schemas and settings
def test_schemas_forbid_unknown_fields_and_validate_types() -> None:
    with pytest.raises(InputError, match=r"^top_k: is not a known field"):
        parse_model(CompressRequest, {"query": "q", "docs": [], "top_k": 3})
    with pytest.raises(InputError, match=r"^docs\[0\]\.text"):
        parse_model(CompressRequest, {"query": "q", "docs": [{"id": "a"}]}).documents()
    with pytest.raises(InputError, match=r"^budget"):
        parse_model(CompressRequest, {"query": "q", "docs": [], "budget": True})
    assert parse_model(ContextField, {"documents": [], "ratio": 1}).ratio == 1


def test_settings_validate() -> None:
    assert ServerSettings(upstream="https://api.example.com/v1/").upstream == "https://api.example.com/v1"
    for bad in (
        {"upstream": "api.example.com"},
        {"budget": 0},
        {"budget": 5, "ratio": 0.5},
        {"max_batch": 0},
    ):
        with pytest.raises(ValueError):
            ServerSettings(**bad)


# --------------------------------------------------------------------------- the batcher
class FakeCompressor:
    """compress_batch records its batch sizes; an item whose query is 'bad' fails alone."""

    config = CompressionConfig()

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def load(self) -> FakeCompressor:
        return self

    def compress_batch(self, items: list[dict[str, Any]], *, return_exceptions: bool) -> list[Any]:
        assert return_exceptions
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(items))
        time.sleep(self.delay)
        return [
            InputError("query", "bad", "fix")
            if it["query"] == "bad"
            else _ctx(f"{it['query']}|{it['budget']}|{it['ratio']}")
            for it in items
        ]


def test_batcher_batches_isolates_errors_and_applies_defaults() -> None:
    fake = FakeCompressor()

    async def main() -> list[Any]:
        b = Batcher(fake, budget=7, max_batch=4, max_wait_ms=30)  # type: ignore[arg-type]
        b.start()
        queries = [f"q{i}" for i in range(9)] + ["bad"]
        coros = [b.compress(q, ["d"]) for q in queries] + [b.compress("r", ["d"], ratio=0.5)]
        out = await asyncio.gather(*coros, return_exceptions=True)
        assert b.ready
        await b.close()
        with pytest.raises(ShuttingDownError):
            await b.compress("late", ["d"])
        return out

    out = asyncio.run(main())
    assert [o.text for o in out[:9]] == [f"q{i}|7|None" for i in range(9)]
    assert isinstance(out[9], InputError) and out[10].text == "r|None|0.5"
    assert max(fake.batches) == 4 and sum(fake.batches) == 11 and len(fake.batches) >= 3
    assert fake.threads == {"ctxcomp-model"}


def test_batcher_skips_cancelled_requests_and_never_blocks_the_loop() -> None:
    fake = FakeCompressor(delay=0.3)

    async def main() -> float:
        b = Batcher(fake, max_wait_ms=0)  # type: ignore[arg-type]
        first = asyncio.ensure_future(b.compress("slow", ["d"]))
        await asyncio.sleep(0.05)  # the first batch is running on the worker thread
        doomed = asyncio.ensure_future(b.compress("doomed", ["d"]))
        await asyncio.sleep(0)
        doomed.cancel()
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)  # the loop stays responsive while the model works
        lag = time.perf_counter() - t0
        await first
        await b.close()
        return lag

    assert asyncio.run(main()) < 0.1
    assert fake.batches == [1]  # the cancelled request never reached the model


def test_batcher_reports_a_failed_load() -> None:
    async def main() -> Any:
        b = Batcher(Compressor(CompressionConfig(proxy_model="/nonexistent/model")))
        with pytest.raises(Exception) as info:
            await b.compress("q?", ["A."])
        err = b.load_error
        await b.close()
        return info.value, err

    raised, err = asyncio.run(main())
    assert type(raised).__name__ == "UnknownModelError" and raised is err


# --------------------------------------------------------------------------- CLI and dependencies
def test_cli_flag_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--upstream", "localhost:8001"]) == 2
    assert "ctxcomp: error: --upstream: must start with http://" in capsys.readouterr().err
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "--max-batch" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert "--host/--port: cannot listen on" in capsys.readouterr().err


def test_missing_server_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("ctxcomp.integrations.server.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ctxcomp\[server\]'"):
        importlib.import_module("ctxcomp.integrations.server.app")


def test_in_process_errors_are_json(tmp_path: Path) -> None:
    import httpx

    from ctxcomp.integrations.server.app import create_app

    async def main() -> list[httpx.Response]:
        app = create_app(Compressor(), ServerSettings())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [
                await c.get("/nope"),
                await c.get("/v1/compress"),
                await c.post("/v1/chat/completions", json={}),
                await c.get("/healthz"),
                await c.get("/readyz"),
            ]

    missing, wrong_method, no_upstream, health, ready = asyncio.run(main())
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "HTTPError"
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert no_upstream.status_code == 503 and "--upstream" in no_upstream.json()["error"]["message"]
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 503  # ASGITransport runs no lifespan: the model never started loading


def test_echo_upstream_answers_with_the_forwarded_request(tiny_qwen: Path) -> None:
    """``--upstream echo`` through the official async client, in process (no LLM anywhere)."""
    import json

    import httpx
    import openai

    from ctxcomp.integrations.server.app import create_app

    docs = ["The lighthouse was built in 1874 by Margaret Doyle. It is 31 m tall.", "A ferry leaves at noon."]
    comp = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention"))

    async def main() -> tuple[Any, str, list[str]]:
        app = create_app(comp, ServerSettings(upstream="echo", budget=15))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/v1")
        client = openai.AsyncOpenAI(base_url="http://t/v1", api_key="-", http_client=http)
        kwargs: dict[str, Any] = {
            "model": "m",
            "messages": [USER],
            "extra_body": {"ctxcomp": {"documents": docs}},
        }
        raw = await client.chat.completions.with_raw_response.create(**kwargs)
        stream = await client.chat.completions.create(stream=True, **kwargs)
        pieces = [
            e.choices[0].delta.content async for e in stream if e.choices and e.choices[0].delta.content
        ]
        models = [m.id async for m in client.models.list()]
        await http.aclose()
        return raw, "".join(pieces), models

    raw, streamed, models = asyncio.run(main())
    forwarded = json.loads(raw.parse().choices[0].message.content)
    expected = comp.compress("Who built it?", docs, budget=15).text
    assert forwarded == {"model": "m", "messages": [{"role": "system", "content": expected}, USER]}
    assert json.loads(streamed) == {**forwarded, "stream": True}
    assert raw.headers["x-ctxcomp-kept-tokens"] == str(
        comp.compress("Who built it?", docs, budget=15).stats.kept_tokens
    )
    assert models == ["echo"]
