"""The LiteLLM pre-call hook: the same rewrite as ``ctxcomp serve``, on a request's ``data`` dict."""

from __future__ import annotations

import asyncio
import copy
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
litellm = pytest.importorskip("litellm")

from ctxcomp import CompressionConfig, Compressor  # noqa: E402
from ctxcomp.integrations.litellm import CtxcompHook  # noqa: E402
from ctxcomp.records import parse_documents  # noqa: E402

DOCS: list[Any] = [
    {
        "id": "lh",
        "text": "The lighthouse was built in 1874 by Margaret Doyle. It is 31 m tall.",
        "metadata": {"s": 1},
    },
    "A ferry leaves the old pier every two hours. Tickets cost 6 euros.",
]
QUESTION = "Who built the lighthouse?"


@pytest.fixture(scope="module")
def comp(tiny_qwen: Path) -> Compressor:
    return Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention")).load()


def request(**ctxcomp: Any) -> dict[str, Any]:
    return {
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
        "temperature": 0,
        "ctxcomp": {"documents": DOCS, **ctxcomp},
    }


def call(hook: CtxcompHook, data: dict[str, Any], call_type: str = "acompletion") -> Any:
    return asyncio.run(hook.async_pre_call_hook(None, None, data, call_type))


def test_hook_compresses_into_a_system_message(comp: Compressor) -> None:
    hook = CtxcompHook(compressor=comp, budget=20)
    data = request()
    before = copy.deepcopy(data)
    out = call(hook, data)
    assert data == before  # never mutated
    expected = comp.compress(QUESTION, parse_documents(DOCS), budget=20).text
    assert "ctxcomp" not in out and out["temperature"] == 0 and out["model"] == "gpt-x"
    assert out["messages"] == [
        before["messages"][0],
        {"role": "system", "content": expected},
        before["messages"][1],
    ]
    assert hook.last is not None and hook.last.headers["x-ctxcomp-kept-tokens"]


def test_hook_placeholder_query_and_ratio(comp: Compressor) -> None:
    data = request(query=QUESTION, ratio=0.5)
    data["messages"] = [{"role": "user", "content": "Context:\n{context}\n\nAnswer it."}]
    out = call(CtxcompHook(compressor=comp), data)
    expected = comp.compress(QUESTION, parse_documents(DOCS), ratio=0.5).text
    assert out["messages"] == [{"role": "user", "content": f"Context:\n{expected}\n\nAnswer it."}]


def test_hook_leaves_other_requests_alone(comp: Compressor) -> None:
    hook = CtxcompHook(compressor=comp)
    plain = {"model": "m", "messages": [{"role": "user", "content": "hi {context}"}]}
    assert call(hook, plain) is plain
    embedding = {"model": "e", "input": "x", "ctxcomp": {"documents": DOCS}}
    assert call(hook, embedding, "aembedding") is embedding


def test_hook_fails_open_with_documents_uncompressed(comp: Compressor) -> None:
    out = call(CtxcompHook(compressor=comp), request(budget=0))
    assert "ctxcomp" not in out
    assert out["messages"][1] == {"role": "system", "content": f"{DOCS[0]['text']}\n\n{DOCS[1]}"}


def test_hook_fail_closed_rejects_with_400_and_503(comp: Compressor) -> None:
    from fastapi import HTTPException

    with pytest.raises(HTTPException) as bad:
        call(CtxcompHook(compressor=comp, fail_closed=True), request(documents=[{"id": "x"}]))
    assert bad.value.status_code == 400
    assert bad.value.detail["field"] == "ctxcomp.documents[0].text"
    broken = CtxcompHook(CompressionConfig(proxy_model="/nonexistent/model"), fail_closed=True)
    with pytest.raises(HTTPException) as down:
        call(broken, request())
    assert down.value.status_code == 503 and down.value.detail["type"] == "UnknownModelError"


def test_config_yaml_callbacks_resolve_to_the_hook(comp: Compressor, tmp_path: Path) -> None:
    """What LiteLLM's proxy loads for ``litellm_settings: callbacks: <module>.<instance>``."""
    from litellm.proxy.types_utils.utils import get_instance_fn

    default = get_instance_fn("ctxcomp.integrations.litellm.proxy_handler_instance")
    assert isinstance(default, CtxcompHook) and default.fail_closed is False
    spec = f"CompressionConfig(proxy_model={str(comp.config.proxy_model)!r}, scorer='attention')"
    (tmp_path / "ctxcomp_hook.py").write_text(
        "from ctxcomp import CompressionConfig\n"
        "from ctxcomp.integrations.litellm import CtxcompHook\n"
        f"proxy_handler_instance = CtxcompHook({spec}, budget=20)\n"
    )
    hook = get_instance_fn(
        "ctxcomp_hook.proxy_handler_instance", config_file_path=str(tmp_path / "config.yaml")
    )
    assert isinstance(hook, litellm.integrations.custom_logger.CustomLogger) and hook.budget == 20
    out = call(hook, request())
    assert "ctxcomp" not in out
    assert out["messages"][1] == {
        "role": "system",
        "content": comp.compress(QUESTION, parse_documents(DOCS), budget=20).text,
    }
