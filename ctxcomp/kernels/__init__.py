"""Probe-reduction backends, chosen by name.

``"torch"`` is :func:`ctxcomp.kernels.reference.probe_attention_ref`, the source of truth.
``"auto"`` resolves to the fastest correct backend for the tensors' device.

Example:
    >>> import torch
    >>> from ctxcomp.kernels import probe_attention
    >>> out = probe_attention(torch.randn(2, 1, 4), torch.randn(1, 3, 4), torch.tensor([0, 0, 1]), 2,
    ...                       scale=0.5, q_pos=torch.tensor([2]), backend="torch")
    >>> tuple(out.shape)
    (2, 2)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "triton"]


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
    """
    from ctxcomp.kernels.reference import probe_attention_ref

    return probe_attention_ref(
        q, k, seg_ids, num_segments, scale=scale, q_pos=q_pos, window=window, softcap=softcap
    )
