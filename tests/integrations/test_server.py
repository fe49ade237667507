"""``ctxcomp serve`` end to end: the real server as a subprocess in front of a real upstream.

The upstream is a second process (this file run as a script, see ``upstream_main``): a small
OpenAI-compatible FastAPI app that generates a few tokens with the tiny random-weight Qwen2
(transformers ``generate``, greedy), streams them as SSE when asked, and records every request it
received (``GET /v1/received``). Clients are the official ``openai`` package and plain httpx.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
fastapi = pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
MAX_BYTES = 100_000
DOCS: list[Any] = [
    {
        "id": "lh",
        "text": "The Harbour Point lighthouse was built in 1874 by Margaret Doyle. It is 31 m tall. "
        "Its lamp was electrified in 1921.",
        "metadata": {"source": "guide"},
    },
    "A ferry leaves the old pier every two hours. Tickets cost 6 euros. The cafe sells cheese.",
    "The market opens on Saturdays. Fresh bread is sold there. The museum is closed on Mondays.",
]
QUESTION = "Who built the lighthouse?"


# --------------------------------------------------------------------------- the upstream app
def build_upstream(model_dir: str) -> Any:
    """An OpenAI-compatible chat server generating with the tiny model; records what it receives."""
    import asyncio

    import torch
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    lock = threading.Lock()
    received: list[dict[str, Any]] = []
    app = FastAPI()

    def text_of(m: dict[str, Any]) -> str:
        c = m.get("content")
        return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or [])

    def generate(messages: list[dict[str, Any]], n: int) -> list[str]:
        prompt = "\n".join(f"{m.get('role')}: {text_of(m)}" for m in messages)
        ids = tok(prompt, return_tensors="pt").input_ids[:, -256:]
        with lock, torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id
            )
        return [tok.decode([int(t)]) for t in out[0, ids.shape[1] :]]

    def chunk(content: str | None, finish: str | None = None) -> str:
        delta = {"content": content} if content is not None else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "tiny",
            "choices": [choice],
        }
        return f"data: {json.dumps(obj)}\n\n"

    @app.post("/v1/chat/completions")
    async def chat(request: fastapi.Request) -> Any:
        raw = await request.body()
        received.append({"body": raw.decode("utf-8"), "headers": dict(request.headers)})
        body = json.loads(raw)
        if body.get("model") == "missing":
            err = {"message": "no such model", "type": "invalid_request_error", "code": "model_not_found"}
            return JSONResponse({"error": err}, status_code=404)
        pieces = await asyncio.to_thread(generate, body["messages"], int(body.get("max_tokens") or 6))
        delay = float(body.get("test_delay", 0.0))
        if body.get("stream"):

            async def events() -> Any:
                for p in pieces:
                    yield chunk(p)
                    await asyncio.sleep(delay)
                yield chunk(None, "length")
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        message = {"role": "assistant", "content": "".join(pieces)}
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "tiny",
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces), "total_tokens": 1 + len(pieces)},
        }

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": "tiny", "object": "model", "created": 0, "owned_by": "t"}]}

    @app.get("/v1/received")
    async def get_received() -> Any:
        return received

    return app


def upstream_main(model_dir: str) -> None:
    """Serve the upstream on a free loopback port; print ``PORT <n>`` before loading the model."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    app = build_upstream(model_dir)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


# --------------------------------------------------------------------------- processes
@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_line(self, prefix: str, timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.logs().splitlines():
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} line (exit {self.proc.poll()}):\n{self.logs()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(cmd: list[str], log: Path) -> Proc:
    """Start ``cmd`` with stdout and stderr going to ``log``."""
    with log.open("wb") as fh:
        return Proc(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT), log)


def start_server(log: Path, *args: str) -> Proc:
    return start([sys.executable, "-m", "ctxcomp", "serve", "--port", "0", *args], log)


def listening(p: Proc) -> Proc:
    """Wait for the server's ``listening on URL`` line and for ``/healthz``."""
    p.url = p.wait_line("ctxcomp serve: listening on ").split("listening on ")[1].split()[0]
    _wait_status(f"{p.url}/healthz")
    return p


def _wait_status(url: str, status: int = 200, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}")


@contextmanager
def stopping(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Always stop every process in ``procs`` (appended to while inside)."""
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    upstream: str
    srv: Proc
    closed: Proc


@pytest.fixture(scope="module")
def stack(tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Started together: the upstream; a fail-open server with the tiny model in front of it; a
    fail-closed server whose model cannot load, in front of an upstream that is down."""
    tmp = tmp_path_factory.mktemp("stack")
    with stopping([]) as procs:
        procs.append(
            start([sys.executable, __file__, "--upstream-app", str(tiny_qwen)], tmp / "upstream.log")
        )
        upstream = f"http://127.0.0.1:{procs[0].wait_line('PORT ').split()[1]}/v1"
        args = ["--upstream", upstream, "--proxy", str(tiny_qwen), "--scorer", "attention"]
        args += ["--max-request-bytes", str(MAX_BYTES), "--max-wait-ms", "20"]
        procs.append(start_server(tmp / "srv.log", *args))
        args = ["--fail-closed", "--proxy", "/nonexistent/proxy-model", "--scorer", "attention"]
        procs.append(
            start_server(tmp / "closed.log", *args, "--upstream", f"http://127.0.0.1:{free_port()}/v1")
        )
        srv, closed = listening(procs[1]), listening(procs[2])
        _wait_status(f"{srv.url}/readyz")
        _wait_status(f"{upstream}/models")
        yield Stack(upstream, srv, closed)


@pytest.fixture(scope="module")
def upstream(stack: Stack) -> str:
    return stack.upstream


@pytest.fixture(scope="module")
def srv(stack: Stack) -> Proc:
    return stack.srv


@pytest.fixture(scope="module")
def closed_srv(stack: Stack) -> Proc:
    return stack.closed


def received(upstream: str) -> list[dict[str, Any]]:
    return httpx.get(f"{upstream}/received").json()


def client(srv: Proc) -> Any:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-test", max_retries=0)


def compressed(srv: Proc, query: str, docs: list[Any], **budget: Any) -> dict[str, Any]:
    r = httpx.post(f"{srv.url}/v1/compress", json={"query": query, "docs": docs, **budget}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- tests
def test_health_ready_models_metrics(srv: Proc) -> None:
    assert httpx.get(f"{srv.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{srv.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert [m.id for m in client(srv).models.list()] == ["tiny"]
    compressed(srv, QUESTION, DOCS, budget=30)
    metrics = httpx.get(f"{srv.url}/metrics").text
    for name in (
        'ctxcomp_requests_total{endpoint="/v1/compress",status="200"}',
        'ctxcomp_requests_total{endpoint="/v1/models",status="200"}',
        "ctxcomp_compress_seconds_bucket",
        "ctxcomp_original_tokens_total",
        "ctxcomp_kept_tokens_total",
        "ctxcomp_batch_size_count",
        "ctxcomp_model_ready 1.0",
    ):
        assert name in metrics, name


def test_compress_endpoint_returns_a_jsonl_record(srv: Proc) -> None:
    out = compressed(srv, QUESTION, DOCS, budget=25)
    assert set(out) == {"text", "sentences", "documents", "stats"}
    assert 0 < out["stats"]["kept_tokens"] <= 25 == out["stats"]["budget"]
    texts = {"lh": DOCS[0]["text"], "1": DOCS[1], "2": DOCS[2]}
    for s in out["sentences"]:
        assert texts[s["doc_id"]][s["start"] : s["end"]] == s["text"]
        assert s["text"] in out["text"]
    for d in out["documents"]:
        if d["id"] == "lh":
            assert d["metadata"]["source"] == "guide" and "ctxcomp_score" in d["metadata"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"docs": ["A."]}, "query"),
        ({"query": " ", "docs": ["A."]}, "query"),
        ({"query": "q?", "docs": ["A.", {"id": "x"}]}, "docs[1].text"),
        ({"query": "q?", "docs": "A."}, "docs"),
        ({"query": "q?", "docs": ["A."], "budget": "10"}, "budget"),
        ({"query": "q?", "docs": ["A."], "ratio": 1.5}, "ratio"),
        ({"query": "q?", "docs": ["A."], "budget": 5, "ratio": 0.5}, "budget/ratio"),
        ({"query": "q?", "docs": ["A."], "top_k": 3}, "top_k"),
        ([1, 2], "body"),
    ],
)
def test_compress_bad_fields_are_400_naming_the_field(srv: Proc, body: Any, field: str) -> None:
    r = httpx.post(f"{srv.url}/v1/compress", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "InputError" and err["field"] == field and err["message"]
    assert "Traceback" not in r.text


def test_compress_invalid_json_and_oversize(srv: Proc) -> None:
    r = httpx.post(f"{srv.url}/v1/compress", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"
    big = {"query": "q?", "docs": ["x" * MAX_BYTES]}
    for path in ("/v1/compress", "/v1/chat/completions"):
        r = httpx.post(f"{srv.url}{path}", json=big)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["type"] == "RequestTooLarge"


def test_chat_inserts_compressed_context_before_last_user_message(srv: Proc, upstream: str) -> None:
    n = len(received(upstream))
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": QUESTION},
    ]
    raw = client(srv).chat.completions.with_raw_response.create(
        model="tiny",
        messages=messages,
        max_tokens=4,
        temperature=0,
        extra_body={"ctxcomp": {"documents": DOCS, "budget": 30}, "custom_field": [1, "two"]},
    )
    completion = raw.parse()
    assert isinstance(completion.choices[0].message.content, str)
    expected = compressed(srv, QUESTION, DOCS, budget=30)
    got = received(upstream)[n:]
    assert len(got) == 1
    body = json.loads(got[0]["body"])
    assert "ctxcomp" not in body and body["custom_field"] == [1, "two"] and body["max_tokens"] == 4
    assert body["messages"] == [*messages[:3], {"role": "system", "content": expected["text"]}, messages[3]]
    assert got[0]["headers"]["authorization"] == "Bearer sk-test"
    assert raw.headers["x-ctxcomp-original-tokens"] == str(expected["stats"]["original_tokens"])
    assert raw.headers["x-ctxcomp-kept-tokens"] == str(expected["stats"]["kept_tokens"])
    assert float(raw.headers["x-ctxcomp-compress-ms"]) > 0
    assert "x-ctxcomp-error" not in raw.headers


def test_chat_placeholder_and_explicit_query(srv: Proc, upstream: str) -> None:
    n = len(received(upstream))
    messages = [
        {"role": "system", "content": "Use only this:\n{context}\nEnd."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Docs again: {context}"}, {"type": "text", "text": "Q"}],
        },
    ]
    client(srv).chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=2,
        extra_body={"ctxcomp": {"documents": DOCS, "query": QUESTION, "ratio": 0.3}},
    )
    ctx = compressed(srv, QUESTION, DOCS, ratio=0.3)["text"]
    body = json.loads(received(upstream)[n]["body"])
    assert body["messages"] == [
        {"role": "system", "content": f"Use only this:\n{ctx}\nEnd."},
        {
            "role": "user",
            "content": [{"type": "text", "text": f"Docs again: {ctx}"}, {"type": "text", "text": "Q"}],
        },
    ]


def test_chat_streams_chunks_in_order(srv: Proc) -> None:
    kwargs: dict[str, Any] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 6,
        "extra_body": {"ctxcomp": {"documents": DOCS, "budget": 30}, "test_delay": 0.15},
    }
    whole = client(srv).chat.completions.create(**kwargs).choices[0].message.content
    raw = client(srv).chat.completions.with_raw_response.create(stream=True, **kwargs)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "x-ctxcomp-kept-tokens" in raw.headers
    pieces, times = [], []
    for event in raw.parse():
        if event.choices and event.choices[0].delta.content is not None:
            pieces.append(event.choices[0].delta.content)
            times.append(time.monotonic())
    assert "".join(pieces) == whole and len(pieces) == 6
    assert times[-1] - times[0] > 0.4  # chunks arrived as the upstream sent them, not all at the end


def test_request_without_ctxcomp_arrives_byte_identical(srv: Proc, upstream: str) -> None:
    n = len(received(upstream))
    raw = '{"model":"tiny",  "messages": [{"role":"user","content":"Gr\\u00fc\\u00df {context}"}],"x":1.50}'
    r = httpx.post(
        f"{srv.url}/v1/chat/completions",
        content=raw.encode(),
        headers={"content-type": "application/json", "authorization": "Bearer k2"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    got = received(upstream)[n]
    assert got["body"] == raw and got["headers"]["authorization"] == "Bearer k2"
    assert len(r.headers.get_list("date")) == 1 and r.headers["server"] == "uvicorn"
    assert not any(h.startswith("x-ctxcomp") for h in r.headers)


def test_upstream_status_and_body_come_back_unchanged(srv: Proc) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(srv).chat.completions.create(
            model="missing",
            messages=[{"role": "user", "content": "Q?"}],
            extra_body={"ctxcomp": {"documents": DOCS}},
        )
    assert info.value.status_code == 404
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert info.value.response.headers["x-ctxcomp-kept-tokens"]


def test_fail_open_forwards_documents_uncompressed(srv: Proc, upstream: str) -> None:
    n = len(received(upstream))
    raw = client(srv).chat.completions.with_raw_response.create(
        model="tiny",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=2,
        extra_body={"ctxcomp": {"documents": ["Doc one.", {"text": "Doc two."}], "budget": -3}},
    )
    assert raw.http_response.status_code == 200
    assert raw.headers["x-ctxcomp-error"] == "InputError"
    body = json.loads(received(upstream)[n]["body"])
    assert "ctxcomp" not in body
    assert body["messages"] == [
        {"role": "system", "content": "Doc one.\n\nDoc two."},
        {"role": "user", "content": QUESTION},
    ]


def test_fail_closed_bad_input_400_and_model_failure_503(closed_srv: Proc) -> None:
    assert httpx.get(f"{closed_srv.url}/healthz").status_code == 200
    _wait_status(f"{closed_srv.url}/readyz", 503)
    ready = httpx.get(f"{closed_srv.url}/readyz").json()
    assert ready["status"] in ("failed", "loading")
    c = client(closed_srv)
    msgs = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.BadRequestError) as bad:
        c.chat.completions.create(
            model="tiny", messages=msgs, extra_body={"ctxcomp": {"documents": DOCS, "budget": 0}}
        )
    assert bad.value.body["field"] == "ctxcomp.budget"  # type: ignore[index]
    assert bad.value.response.headers["x-ctxcomp-error"] == "InputError"
    with pytest.raises(openai.InternalServerError) as down:
        c.chat.completions.create(model="tiny", messages=msgs, extra_body={"ctxcomp": {"documents": DOCS}})
    assert down.value.status_code == 503
    assert down.value.body["type"] == "UnknownModelError"  # type: ignore[index]
    assert httpx.get(f"{closed_srv.url}/readyz").json()["status"] == "failed"
    r = httpx.post(f"{closed_srv.url}/v1/compress", json={"query": "q?", "docs": ["A."]})
    assert r.status_code == 503 and r.json()["error"]["type"] == "UnknownModelError"


def test_upstream_down_is_502_naming_it(closed_srv: Proc) -> None:
    line = next(s for s in closed_srv.logs().splitlines() if "listening on" in s)
    upstream = line.split("(upstream ")[1].split(")")[0]
    r = httpx.post(f"{closed_srv.url}/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "UpstreamError" and upstream in r.json()["error"]["message"]
    assert httpx.get(f"{closed_srv.url}/v1/models").status_code == 502


def test_concurrent_requests_are_batched_and_kept_apart(srv: Proc) -> None:
    def batches() -> float:
        for line in httpx.get(f"{srv.url}/metrics").text.splitlines():
            if line.startswith("ctxcomp_batch_size_count"):
                return float(line.split()[1])
        return 0.0

    before = batches()
    results: dict[int, dict[str, Any]] = {}
    together = threading.Barrier(16)

    def one(i: int) -> None:
        together.wait(30)
        docs = [
            {"id": f"r{i}-{j}", "text": f"Item {i} part {j} is here. It has {j} parts."} for j in range(3)
        ]
        results[i] = compressed(srv, f"Where is item {i}?", docs, budget=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(16))
    for i, out in results.items():
        assert out["sentences"] and all(s["doc_id"].startswith(f"r{i}-") for s in out["sentences"])
    assert batches() - before < 16


def test_sigterm_finishes_in_flight_stream(upstream: str, tmp_path: Path) -> None:
    args = ["--upstream", upstream, "--proxy", "/nonexistent/proxy-model"]
    with stopping([start_server(tmp_path / "term.log", *args)]) as procs:
        s = listening(procs[0])
        stream = client(s).chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=6,
            stream=True,
            extra_body={"test_delay": 0.3},
        )
        pieces = []
        for event in stream:
            if event.choices and event.choices[0].delta.content is not None:
                pieces.append(event.choices[0].delta.content)
                if len(pieces) == 1:
                    s.proc.send_signal(signal.SIGTERM)
        assert len(pieces) == 6
        assert s.proc.wait(30) == 0, s.logs()


@pytest.mark.slow
def test_readme_serve_lines_with_the_offline_default(tmp_path: Path) -> None:
    """The README's three lines, as pasted (but on a free port), against the offline default."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Serve") :]
    start = section.split("```bash\n")[1].split("\n")[0]
    client_code = section.split("```python\n")[1].split("```")[0]
    args = start.split("#")[0].replace("&", "").split()
    assert args[:2] == ["ctxcomp", "serve"]
    with stopping([start_server(tmp_path / "readme.log", *args[2:])]) as procs:
        s = listening(procs[0])
        code = client_code.replace("http://127.0.0.1:8000", s.url)
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV
        )
        assert done.returncode == 0, done.stderr[-3000:]
        forwarded = json.loads(done.stdout)
        assert "ctxcomp" not in forwarded
        assert forwarded["messages"][0]["role"] == "system"
        assert "Margaret Doyle" in forwarded["messages"][0]["content"]
        assert forwarded["messages"][1] == {"role": "user", "content": "Who built the lighthouse?"}
        assert httpx.get(f"{s.url}/readyz").json()["model"] == "gemma-3-270m"
        out = compressed(s, "Who built the lighthouse?", DOCS, budget=30)
        assert out["stats"]["proxy_model"] == "gemma-3-270m" and 0 < out["stats"]["kept_tokens"] <= 30
        assert [m.id for m in client(s).models.list()] == ["echo"]
        assert "ctxcomp_model_ready 1.0" in httpx.get(f"{s.url}/metrics").text


if __name__ == "__main__" and sys.argv[1:2] == ["--upstream-app"]:
    upstream_main(sys.argv[2])
