"""Backend dispatch of :func:`ctxcomp.kernels.probe_attention` (no Triton needed)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from ctxcomp.errors import ConfigError, MissingDependencyError
from ctxcomp.kernels import available_backends, probe_attention, resolve_backend
from ctxcomp.kernels.reference import probe_attention_ref


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 3, 16, generator=g)  # [HQ, M, D]
    k = torch.randn(2, 20, 16, generator=g)  # [HKV, N, D]
    seg = torch.tensor([-1] * 2 + [0] * 6 + [1] * 7 + [-1] * 5)  # [N]
    pos = torch.tensor([17, 18, 19])  # [M]
    return q, k, seg, pos


def test_torch_backend_equals_reference() -> None:
    q, k, seg, pos = _inputs()
    out = probe_attention(q, k, seg, 2, scale=0.25, q_pos=pos, window=10, softcap=5.0, backend="torch")
    ref = probe_attention_ref(q, k, seg, 2, scale=0.25, q_pos=pos, window=10, softcap=5.0)
    assert torch.equal(out, ref)


def test_auto_on_cpu_falls_back_to_torch_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    import ctxcomp.kernels as kernels

    kernels._logged_fallbacks.clear()
    q, k, seg, pos = _inputs()
    with caplog.at_level(logging.INFO, logger="ctxcomp.kernels"):
        out = probe_attention(q, k, seg, 2, scale=0.25, q_pos=pos)
        probe_attention(q, k, seg, 2, scale=0.25, q_pos=pos)
    assert torch.equal(out, probe_attention_ref(q, k, seg, 2, scale=0.25, q_pos=pos))
    fallbacks = [r for r in caplog.records if "torch reference" in r.getMessage()]
    assert len(fallbacks) == 1
    assert "cpu" in fallbacks[0].getMessage()


def test_resolve_backend() -> None:
    assert available_backends() == ("auto", "torch", "triton")
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", "cuda") == "torch"


def test_unknown_backend_raises_config_error() -> None:
    q, k, seg, pos = _inputs()
    with pytest.raises(ConfigError) as info:
        probe_attention(q, k, seg, 2, scale=0.25, q_pos=pos, backend="cuda-magic")  # type: ignore[arg-type]
    assert info.value.field == "kernel_backend"
    assert "'torch'" in str(info.value)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, seg, pos = _inputs()
    with pytest.raises(ConfigError) as info:
        probe_attention(q, k, seg, 2, scale=0.25, q_pos=pos, backend="triton")
    assert info.value.field == "kernel_backend"
    assert "TRITON_INTERPRET=1" in str(info.value)


def test_triton_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctxcomp.kernels.triton_probe as triton_probe

    monkeypatch.setattr(triton_probe, "HAS_TRITON", False)
    q, k, seg, pos = _inputs()
    with pytest.raises(MissingDependencyError, match=r"ctxcomp\[triton\]"):
        triton_probe.probe_attention_triton(q, k, seg, 2, scale=0.25, q_pos=pos)


def test_import_is_light() -> None:
    code = (
        "import sys, ctxcomp.kernels; "
        "bad = [m for m in ('torch', 'triton') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
