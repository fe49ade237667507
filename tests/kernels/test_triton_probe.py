"""Triton probe kernel vs the PyTorch reference over awkward shapes.

On a CPU machine the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by this
folder's ``conftest.py`` before the kernel module is imported); with a GPU they run compiled.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'ctxcomp[triton]')")

import ctxcomp.kernels.triton_probe as triton_probe
from ctxcomp.kernels import probe_attention
from ctxcomp.kernels.reference import probe_attention_ref

pytestmark = pytest.mark.triton_interpret

RERUN_REASON: str | None = None
if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1":
    DEVICE = "cuda"
else:
    DEVICE = "cpu"
    if not triton_probe.kernels_interpreted() and os.environ.get("TRITON_INTERPRET") == "1":
        # Only the kernel module was imported before the variable was set: rebuild its kernels.
        triton_probe = importlib.reload(triton_probe)
    if not triton_probe.kernels_interpreted():
        RERUN_REASON = (
            "triton was imported in this process before TRITON_INTERPRET=1; "
            "the comparisons run in a fresh interpreter instead (test_in_fresh_interpreter)"
        )


@pytest.fixture(autouse=True)
def _needs_kernels_here(request: pytest.FixtureRequest) -> None:
    if RERUN_REASON is not None and request.node.name != "test_in_fresh_interpreter":
        pytest.skip(RERUN_REASON)


@pytest.mark.skipif(RERUN_REASON is None, reason="the kernels run in this process")
def test_in_fresh_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@dataclass(frozen=True)
class Case:
    """One comparison: shapes, layout of segments and masking options."""

    name: str
    hq: int
    hkv: int
    m: int
    n: int
    d: int
    layout: str = "sentences"
    dtype: torch.dtype = torch.float32
    window: int | None = None
    softcap: float | None = None
    q_pos: str = "tail"


def _segments(layout: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, int]:
    """``[N]`` segment ids and ``S`` for a named layout."""
    j = torch.arange(n)  # [N]
    if layout == "sentences":  # sink token, sentences of 1..9 tokens, question tail of 5
        lengths = torch.randint(1, 10, (n,), generator=g)
        seg = torch.repeat_interleave(torch.arange(n), lengths)[:n]  # [N]
        seg[0] = -1
        seg[max(1, n - 5) :] = -1
    elif layout == "one_token":  # every context token its own sentence, question at the end
        seg = torch.where(j < n - max(1, n // 8), j, torch.full_like(j, -1))
    elif layout == "empty":  # no context at all
        seg = torch.full((n,), -1)
    elif layout == "shuffled":  # non-contiguous ids, interleaved, some segments empty
        seg = torch.randint(0, max(1, n // 4), (n,), generator=g) * 2
        seg[torch.rand(n, generator=g) < 0.1] = -1
    elif layout == "all_context":
        seg = j // 3
    else:
        raise ValueError(layout)
    num_segments = int(seg.max()) + 3 if bool((seg >= 0).any()) else 4  # spare empty bins
    return seg, num_segments


def _run(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(case.hq, case.m, case.d, generator=g) * 2).to(case.dtype)  # [HQ, M, D]
    k = (torch.randn(case.hkv, case.n, case.d, generator=g) * 2).to(case.dtype)  # [HKV, N, D]
    seg, s = _segments(case.layout, case.n, g)  # [N]
    if case.q_pos == "tail":
        pos = torch.arange(case.n - case.m, case.n).clamp_min(0)  # [M]
    else:  # rows spread over the prompt, some of which see no context token yet
        pos = torch.linspace(0, case.n - 1, case.m).long()  # [M]
    kwargs = {"scale": case.d**-0.5, "q_pos": pos, "window": case.window, "softcap": case.softcap}
    ref = probe_attention_ref(q, k, seg, s, **kwargs)  # [HQ, S]
    q, k, seg, pos = (t.to(DEVICE) for t in (q, k, seg, pos))
    kwargs["q_pos"] = pos
    out = torch.empty(case.hq, s, dtype=torch.float32, device=DEVICE)  # [HQ, S]
    got = triton_probe.probe_attention_fwd(q, k, seg, s, out=out, poison=True, **kwargs)  # [HQ, S]
    assert got.data_ptr() == out.data_ptr()
    return got.cpu(), ref


CASES = [
    Case("n1_m1", hq=4, hkv=1, m=1, n=1, d=64, layout="all_context"),
    Case("n63_m7_gqa7_one_token", hq=14, hkv=2, m=7, n=63, d=64, layout="one_token"),
    Case("n1000_m33_gqa7", hq=14, hkv=2, m=33, n=1000, d=64),
    Case("n1000_m1_gemma_window_softcap", hq=4, hkv=1, m=1, n=1000, d=256, window=100, softcap=50.0),
    Case("n63_m33_gemma_softcap", hq=4, hkv=1, m=33, n=63, d=256, softcap=20.0),
    Case("n63_m7_window_shorter_than_ctx", hq=14, hkv=2, m=7, n=63, d=64, window=9),
    Case("n1000_m7_spread_rows_window", hq=4, hkv=1, m=7, n=1000, d=64, window=300, q_pos="spread"),
    Case("n63_m33_spread_rows", hq=14, hkv=2, m=33, n=63, d=64, q_pos="spread"),
    Case("n1000_m7_shuffled_ids", hq=14, hkv=2, m=7, n=1000, d=64, layout="shuffled"),
    Case("n1000_m7_fp16", hq=14, hkv=2, m=7, n=1000, d=64, dtype=torch.float16),
    Case("n1000_m7_bf16_softcap", hq=14, hkv=2, m=7, n=1000, d=64, dtype=torch.bfloat16, softcap=30.0),
    Case("n63_m1_gemma_bf16_window", hq=4, hkv=1, m=1, n=63, d=256, dtype=torch.bfloat16, window=16),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_reference(case: Case) -> None:
    got, ref = _run(case)
    assert not got.isnan().any(), "unwritten or NaN output"
    err = (got - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
    assert err <= TOL[case.dtype], f"relative error {err:.2e}"


def test_rows_sum_to_one_over_segments() -> None:
    got, ref = _run(Case("sum", hq=14, hkv=2, m=7, n=63, d=64))
    torch.testing.assert_close(got.sum(-1), torch.ones(14), rtol=0, atol=1e-5)
    torch.testing.assert_close(ref.sum(-1), torch.ones(14), rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [1, 63])
def test_empty_context_is_zero(n: int) -> None:
    got, ref = _run(Case("empty", hq=4, hkv=1, m=7, n=n, d=64, layout="empty"))
    assert torch.equal(got, torch.zeros_like(got))
    assert torch.equal(ref, torch.zeros_like(ref))


def test_rows_without_visible_context_contribute_zero() -> None:
    # Every row's window covers only the question tail: no context visible, so zeros.
    got, _ = _run(Case("blind", hq=4, hkv=1, m=3, n=63, d=64, window=3))
    assert torch.equal(got, torch.zeros_like(got))


def test_deterministic() -> None:
    case = Case("det", hq=14, hkv=2, m=7, n=200, d=64, layout="shuffled")
    first, _ = _run(case, seed=3)
    second, _ = _run(case, seed=3)
    assert torch.equal(first, second)


def test_degenerate_sizes_return_zeros() -> None:
    q = torch.randn(4, 0, 64, device=DEVICE)  # [HQ, 0, D]
    k = torch.randn(2, 5, 64, device=DEVICE)  # [HKV, N, D]
    seg = torch.zeros(5, dtype=torch.long, device=DEVICE)  # [N]
    pos = torch.zeros(0, dtype=torch.long, device=DEVICE)  # [0]
    out = triton_probe.probe_attention_fwd(q, k, seg, 3, scale=0.125, q_pos=pos, poison=True)
    assert torch.equal(out.cpu(), torch.zeros(4, 3))


def test_dispatch_triton_backend() -> None:
    case = Case("dispatch", hq=4, hkv=2, m=2, n=40, d=64)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(case.hq, case.m, case.d, generator=g)  # [HQ, M, D]
    k = torch.randn(case.hkv, case.n, case.d, generator=g)  # [HKV, N, D]
    seg = torch.arange(case.n) // 8  # [N]
    pos = torch.tensor([38, 39])  # [M]
    ref = probe_attention_ref(q, k, seg, 5, scale=0.125, q_pos=pos)
    q, k, seg, pos = (t.to(DEVICE) for t in (q, k, seg, pos))
    got = probe_attention(q, k, seg, 5, scale=0.125, q_pos=pos, backend="triton")
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-6)


def test_pick_blocks_fit_tl_dot() -> None:
    for d in (32, 64, 80, 128, 256):
        for m in (1, 7, 33, 100):
            cfg = triton_probe.pick_blocks(d, m)
            assert cfg.block_m >= 16 and cfg.block_n >= 16 and cfg.block_d >= d
