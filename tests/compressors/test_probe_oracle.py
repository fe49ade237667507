"""The probe equals eager ``output_attentions`` (the oracle) within 1e-5 on tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ctxcomp.compressors.probe import PromptTemplate, Unit, build_prompt
from ctxcomp.models.attention import ProbeRow, register_attention, run_probe, token_segments
from ctxcomp.text.split import split_sentences
from ctxcomp.types import Document

DOCS = [
    Document("a", "The Eiffel Tower is in Paris. Paris is the capital of France."),
    Document("b", "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901. He was German."),
    Document("c", "东京是日本的首都。 Emoji 😀 and numbers 3.14 are fine."),
]


def _prompt(tok, query: str = "who won the first Nobel Prize in Physics?"):
    units, first = [], 0
    for i, d in enumerate(DOCS):
        sents = tuple(split_sentences(d))
        units.append(Unit(i, first, sents))
        first += len(sents)
    prompt, char_seg = build_prompt(query, units, DOCS, PromptTemplate(), focus=False)
    enc = tok(prompt, return_offsets_mapping=True, add_special_tokens=True)
    seg = token_segments(enc["offset_mapping"], char_seg)
    return torch.tensor([enc["input_ids"]]), seg, first


def _probe(model, ids, seg, s, *, layers, m, backend="torch", hidden_layers=()):  # type: ignore[no-untyped-def]
    """One unpadded row, the last ``m`` positions: ``{layer: [H, S]}``."""
    n = ids.shape[1]
    row = ProbeRow(np.asarray(seg, dtype=np.int64), s, [np.arange(n - min(m, n), n)])
    (res,) = run_probe(model, ids, [row], layers=layers, backend=backend, hidden_layers=hidden_layers)
    return {li: v[0] for li, v in res.mass.items()}


def _oracle(path: Path, ids: torch.Tensor, seg: np.ndarray, s: int, layers, m: int) -> dict[int, np.ndarray]:
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        att = model(input_ids=ids, output_attentions=True).attentions
    ctx = torch.from_numpy(seg >= 0)
    out = {}
    for li in layers:
        p = att[li][0, :, -m:, :].double()  # [H, M, N]
        p = p * ctx
        denom = p.sum(-1, keepdim=True)
        p = torch.where(denom > 0, p / denom.clamp_min(1e-300), torch.zeros_like(p))  # no context seen -> 0
        binned = torch.zeros(p.shape[0], m, s, dtype=torch.float64)
        binned.index_add_(2, torch.from_numpy(np.maximum(seg, 0)), p)
        out[li] = binned.mean(1).numpy()
    return out


@pytest.mark.parametrize("kind", ["tiny_qwen", "tiny_gemma"])
@pytest.mark.parametrize("m", [1, 5])
def test_probe_matches_eager(kind: str, m: int, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(kind)
    tok = AutoTokenizer.from_pretrained(path)
    ids, seg, s = _prompt(tok)
    assert ids.shape[1] > 16, "prompt must exceed the tiny Gemma's sliding window"
    model = AutoModelForCausalLM.from_pretrained(
        path, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    )
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers))
    got = _probe(model, ids, seg, s, layers=layers, m=m)
    want = _oracle(path, ids, seg, s, layers, m)
    for li in layers:
        np.testing.assert_allclose(got[li], want[li], atol=1e-5, rtol=0)
        # Each head's row sums to 1 over sentences (sink and question mass removed), or to 0 on a
        # sliding layer whose window holds no context token.
        sums = got[li].sum(-1)
        assert np.all((np.abs(sums - 1.0) < 1e-5) | (sums == 0.0))


def test_sliding_window_layers_blind_to_far_context(tiny_gemma: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_gemma)
    ids, seg, s = _prompt(tok)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_gemma, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    )
    got = _probe(model, ids, seg, s, layers=[0, 2], m=1)
    n = ids.shape[1]
    visible = set(seg[max(0, n - 16) :][seg[max(0, n - 16) :] >= 0].tolist())
    far = [g for g in range(s) if g not in visible]
    assert far, "test prompt must have sentences outside the window"
    assert np.all(got[0][:, far] == 0.0)  # sliding layer: cannot see them
    assert np.all(got[2][:, far].sum(-1) > 0)  # global layer: sees everything


def test_forward_stops_after_deepest_layer(tiny_qwen: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    ids, seg, s = _prompt(tok)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    )
    called: list[int] = []
    hooks = [
        layer.register_forward_pre_hook(lambda mod, args, i=i: called.append(i))
        for i, layer in enumerate(model.model.layers)
    ]
    head_calls: list[int] = []
    hooks.append(model.lm_head.register_forward_pre_hook(lambda mod, args: head_calls.append(1)))
    _probe(model, ids, seg, s, layers=[1], m=1)
    for h in hooks:
        h.remove()
    assert called == [0, 1]
    assert head_calls == []


def test_plain_forward_unaffected(tiny_qwen: Path) -> None:
    """With no probe request, the registered attention is exactly SDPA."""
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    ids, _, _ = _prompt(tok)
    probe_model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    )
    eager = AutoModelForCausalLM.from_pretrained(tiny_qwen, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        a = probe_model(input_ids=ids).logits
        b = eager(input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on a lent GPU)")
@pytest.mark.parametrize("kind", ["tiny_qwen", "tiny_gemma"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_probe_matches_eager_on_cuda(kind: str, backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "triton":
        pytest.importorskip("triton")
    path = request.getfixturevalue(kind)
    tok = AutoTokenizer.from_pretrained(path)
    ids, seg, s = _prompt(tok)
    model = AutoModelForCausalLM.from_pretrained(
        path, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    ).to("cuda")
    layers = list(range(model.config.num_hidden_layers))
    got = _probe(model, ids.to("cuda"), seg, s, layers=layers, m=3, backend=backend)
    want = _oracle(path, ids, seg, s, layers, 3)
    for li in layers:
        np.testing.assert_allclose(got[li], want[li], atol=1e-4, rtol=0)


def test_early_flush_of_held_keys_gives_the_same_result(
    tiny_qwen: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctxcomp.models.attention as probe_mod

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    ids, seg, s = _prompt(tok)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    )
    layers = list(range(model.config.num_hidden_layers))
    batched = _probe(model, ids, seg, s, layers=layers, m=2)
    monkeypatch.setattr(probe_mod, "_PENDING_BYTES", 0)  # flush after every layer
    monkeypatch.setattr(probe_mod, "_BATCH_ELEMENTS", 1)  # and one layer per reduction
    single = _probe(model, ids, seg, s, layers=layers, m=2)
    for li in layers:
        np.testing.assert_allclose(batched[li], single[li], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["tiny_qwen", "tiny_gemma"])
def test_batched_prefill_equals_one_prompt_prefills(kind: str, request: pytest.FixtureRequest) -> None:
    """Left-padded batches (several lengths, a sliding-window model too) give the unbatched numbers."""
    from ctxcomp.models.probed import ProbedLM, SegmentedPrompt

    lm = ProbedLM(str(request.getfixturevalue(kind)), device="cpu")
    texts = [
        "The Eiffel Tower is in Paris. Paris is the capital of France. Who?",
        "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901. He was German. "
        "東京是日本的首都。 Emoji 😀 and numbers 3.14 are fine. The question: who won?",
        "Short one. Who?",
    ]
    prompts = []
    for t in texts:
        cut = t.rindex(".") + 1
        spans = [(0, t.index(".") + 1), (t.index(".") + 2, cut)]
        prompts.append(SegmentedPrompt.from_spans(t, spans, query_span=(cut + 1, len(t))))
    kw = {"layers": [0, 1, 2], "m": 2, "groups": ("last", "query"), "hidden_layers": (1,)}
    one = lm.prefill(prompts, batch_tokens=0, **kw)
    many = lm.prefill(prompts, batch_tokens=10_000, **kw)
    for a, b in zip(one, many, strict=True):
        for g in ("last", "query"):
            np.testing.assert_allclose(a.mass[g], b.mass[g], atol=2e-5, rtol=0)
        np.testing.assert_allclose(a.hidden[1], b.hidden[1], atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(
            a.group_hidden[1]["query"], b.group_hidden[1]["query"], atol=2e-4, rtol=1e-4
        )
        np.testing.assert_array_equal(a.segment_tokens, b.segment_tokens)


def test_query_group_and_hidden_pooling_match_eager(tiny_qwen: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    ids, seg, s = _prompt(tok)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen, attn_implementation=register_attention("sdpa"), dtype=torch.float32
    )
    from ctxcomp.models.attention import install_hidden_hooks

    install_hidden_hooks(model)
    n = ids.shape[1]
    rows_q = np.arange(n - 7, n - 2)  # some question tokens
    row = ProbeRow(np.asarray(seg, dtype=np.int64), s, [np.arange(n - 1, n), rows_q])
    (res,) = run_probe(model, ids, [row], layers=[1, 2], backend="torch", hidden_layers=(0, 2))
    eager = AutoModelForCausalLM.from_pretrained(tiny_qwen, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        out = eager(input_ids=ids, output_attentions=True, output_hidden_states=True)
    ctx = torch.from_numpy(seg >= 0)
    for li in (1, 2):
        p = out.attentions[li][0][:, rows_q, :].double() * ctx  # [H, M, N]
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-300)
        binned = torch.zeros(p.shape[0], len(rows_q), s, dtype=torch.float64)
        binned.index_add_(2, torch.from_numpy(np.maximum(seg, 0)), p)
        np.testing.assert_allclose(res.mass[li][1], binned.mean(1).numpy(), atol=1e-5, rtol=0)
    for li in (0, 2):
        h = out.hidden_states[li + 1][0].double()  # [N, D]: output of decoder layer li
        want = np.stack([h[torch.from_numpy(seg == j)].mean(0).numpy() for j in range(s)])
        np.testing.assert_allclose(res.hidden[li], want, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(res.group_hidden[li][1], h[rows_q].mean(0).numpy(), atol=1e-4, rtol=1e-4)
