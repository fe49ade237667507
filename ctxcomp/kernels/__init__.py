"""Probe-reduction backends, chosen by name.

``"torch"`` is :func:`ctxcomp.kernels.reference.probe_attention_ref`, the source of truth.
``"triton"`` is :func:`ctxcomp.kernels.triton_probe.probe_attention_triton`, the fused kernel.
``"auto"`` resolves to the fastest correct backend for the tensors' device: Triton for CUDA
tensors when Triton is installed, the reference otherwise (the reason is logged once).

Backends live in a lazy registry: importing this package imports neither torch nor triton.

Example:
    >>> import torch
    >>> from ctxcomp.kernels import probe_attention
    >>> out = probe_attention(torch.randn(2, 1, 4), torch.randn(1, 3, 4), torch.tensor([0, 0, 1]), 2,
    ...                       scale=0.5, q_pos=torch.tensor([2]), backend="torch")
    >>> tuple(out.shape)
    (2, 2)
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from ctxcomp.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "triton"]

_REGISTRY: dict[str, str] = {
    "torch": "ctxcomp.kernels.reference:probe_attention_ref",
    "triton": "ctxcomp.kernels.triton_probe:probe_attention_triton",
}
"""Backend name -> ``"module:function"``; imported on first use."""

_logged_fallbacks: set[str] = set()


def available_backends() -> tuple[str, ...]:
    """Names accepted by :func:`probe_attention` (``"auto"`` included).

    Returns:
        The backend names, ``"auto"`` first.

    Example:
        >>> available_backends()
        ('auto', 'torch', 'triton')
    """
    return ("auto", *_REGISTRY)


def _load(name: str) -> Callable[..., torch.Tensor]:
    module, _, attr = _REGISTRY[name].partition(":")
    fn: Callable[..., torch.Tensor] = getattr(importlib.import_module(module), attr)
    return fn


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _log_fallback_once(reason: str) -> None:
    if reason not in _logged_fallbacks:
        _logged_fallbacks.add(reason)
        logger.info("probe kernel backend 'auto' uses the torch reference: %s", reason)


def resolve_backend(backend: str, device_type: str) -> str:
    """Resolve a backend name to a registered one for tensors on ``device_type``.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        device_type: ``torch.device.type`` of the inputs, e.g. ``"cuda"`` or ``"cpu"``.

    Returns:
        ``"torch"`` or ``"triton"``.

    Raises:
        ConfigError: Unknown name, or ``"triton"`` on non-CUDA tensors outside the interpreter.

    Example:
        >>> resolve_backend("auto", "cpu")
        'torch'
    """
    if backend == "auto":
        if device_type != "cuda":
            _log_fallback_once(f"tensors are on {device_type}, the Triton kernel needs CUDA")
            return "torch"
        if importlib.util.find_spec("triton") is None:
            _log_fallback_once("triton is not installed (pip install 'ctxcomp[triton]')")
            return "torch"
        return "triton"
    if backend not in _REGISTRY:
        raise ConfigError(
            "kernel_backend",
            f"unknown backend {backend!r}",
            f"use one of {', '.join(repr(b) for b in available_backends())}",
        )
    if backend == "triton" and device_type != "cuda" and not _interpreting():
        raise ConfigError(
            "kernel_backend",
            f"'triton' needs CUDA tensors, got {device_type} tensors",
            "use kernel_backend='auto' or 'torch' off the GPU, or set TRITON_INTERPRET=1 before "
            "importing triton to run the kernel in Triton's (slow) interpreter",
        )
    return backend


def probe_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    seg_ids: torch.Tensor,
    num_segments: int,
    *,
    scale: float,
    q_pos: torch.Tensor,
    window: int | None = None,
    softcap: float | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Dispatch the probe reduction to a backend; same contract as the reference.

    Args:
        q: ``[HQ, M, D]`` probe-row queries after RoPE.
        k: ``[HKV, N, D]`` keys after RoPE.
        seg_ids: ``[N]`` segment id per key, ``-1`` outside the context.
        num_segments: Number of segments ``S``.
        scale: Softmax scale.
        q_pos: ``[M]`` absolute positions of the probe rows.
        window: Sliding window of the layer, or ``None``.
        softcap: Logit soft-capping, or ``None``.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        ``[HQ, S]`` float32 per-segment context attention, averaged over rows.

    Raises:
        ConfigError: Unknown backend, or ``"triton"`` on CPU tensors without ``TRITON_INTERPRET=1``.
        MissingDependencyError: ``"triton"`` was asked for and Triton is not installed.

    Example:
        >>> import torch
        >>> q, k = torch.randn(4, 2, 8), torch.randn(2, 6, 8)
        >>> seg, pos = torch.tensor([-1, 0, 0, 1, 1, -1]), torch.tensor([4, 5])
        >>> out = probe_attention(q, k, seg, 2, scale=8**-0.5, q_pos=pos)  # "auto": torch on CPU
        >>> bool(torch.allclose(out.sum(-1), torch.ones(4)))
        True
    """
    fn = _load(resolve_backend(backend, q.device.type))
    return fn(q, k, seg_ids, num_segments, scale=scale, q_pos=q_pos, window=window, softcap=softcap)


__all__ = ["Backend", "available_backends", "probe_attention", "resolve_backend"]
