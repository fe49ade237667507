"""The probing attention function: one truncated prefill that reads what the last positions attend to.

A custom attention function, registered with transformers' ``AttentionInterface`` (and the
matching mask function with ``AttentionMaskInterface``), delegates the model's own attention to
the stock SDPA / flash-attention function, and on the probe layers also hands the post-RoPE
queries of the probe rows and the layer's keys to :func:`ctxcomp.kernels.probe_attention`. The
forward pass raises a private exception right after the deepest probe layer, so deeper layers
and the LM head never run.

Example:
    >>> token_segments([(0, 2), (2, 3), (3, 3)], np.array([-1, 0, 0]))
    array([ 0,  0, -1])
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

ATTN_PREFIX = "ctxcomp_"


class _StopForward(Exception):
    """Raised after the deepest probe layer to end the forward pass early."""


@dataclass
class _Request:
    layers: frozenset[int]
    deepest: int
    q_pos: torch.Tensor  # [M]
    seg_ids: torch.Tensor  # [N]
    num_segments: int
    backend: str
    out: dict[int, torch.Tensor] = field(default_factory=dict)
    # (layer, q [HQ, M, D], k [HKV, N, D], scale, window, softcap), reduced in one batch at the end
    pending: list[tuple[int, torch.Tensor, torch.Tensor, float, int | None, float | None]] = field(
        default_factory=list
    )


# Largest [heads, M, N] probability block one batched reduction may cover (the torch reference
# materialises it in fp32): 2^26 elements = 256 MiB.
_BATCH_ELEMENTS = 1 << 26
# Keys held for the batched reduction are flushed early past this many bytes (long contexts read
# at many layers, e.g. a reader's full-depth attention for reordering).
_PENDING_BYTES = 1 << 28


def _flush(req: _Request) -> None:
    """Reduce every pending probe layer, batching layers as extra heads.

    Stacking L layers' queries ``[L*HQ, M, D]`` and keys ``[L*HKV, N, D]`` keeps the GQA mapping
    (query head ``l*HQ + h`` reads kv head ``l*HKV + h // group``), so one kernel launch serves
    all layers that share scale, window and soft-cap: launch overhead is paid once per prefill
    instead of once per layer.
    """
    import torch

    from ctxcomp.kernels import probe_attention

    groups: dict[tuple[float, int | None, float | None, torch.dtype, tuple[int, ...]], list[int]] = {}
    for i, (_, q, k, scale, window, softcap) in enumerate(req.pending):
        groups.setdefault((scale, window, softcap, k.dtype, tuple(q.shape) + tuple(k.shape)), []).append(i)
    for (scale, window, softcap, _, _), idx in groups.items():
        _, q0, k0, *_ = req.pending[idx[0]]
        hq, m, _ = q0.shape
        n = k0.shape[1]
        per_batch = max(1, _BATCH_ELEMENTS // max(hq * m * n, 1))
        for a in range(0, len(idx), per_batch):
            chunk = [req.pending[i] for i in idx[a : a + per_batch]]
            qs = torch.cat([c[1] for c in chunk]) if len(chunk) > 1 else chunk[0][1]  # [L*HQ, M, D]
            ks = torch.cat([c[2] for c in chunk]) if len(chunk) > 1 else chunk[0][2]  # [L*HKV, N, D]
            out = probe_attention(
                qs,
                ks,
                req.seg_ids,
                req.num_segments,
                scale=scale,
                q_pos=req.q_pos,
                window=window,
                softcap=softcap,
                backend=req.backend,  # type: ignore[arg-type]
            )  # [L*HQ, S]
            for j, c in enumerate(chunk):
                req.out[c[0]] = out[j * hq : (j + 1) * hq]
    req.pending.clear()


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("ctxcomp_probe", default=None)
_REGISTER_LOCK = threading.Lock()
_REGISTERED: set[str] = set()


def register_attention(base: str) -> str:
    """Register the probing twin of a stock attention implementation and its mask function.

    Args:
        base: ``"sdpa"`` or ``"flash_attention_2"`` (any name in ``ALL_ATTENTION_FUNCTIONS``).

    Returns:
        The registered name, ``"ctxcomp_" + base``, to pass as ``attn_implementation``.

    Example:
        >>> register_attention("sdpa")  # doctest: +SKIP
        'ctxcomp_sdpa'
    """
    name = ATTN_PREFIX + base
    with _REGISTER_LOCK:
        if name in _REGISTERED:
            return name
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        stock = ALL_ATTENTION_FUNCTIONS[base]

        def probing_attention(
            module: Any,
            query: torch.Tensor,  # [B, HQ, T, D]
            key: torch.Tensor,  # [B, HKV, T, D]
            value: torch.Tensor,  # [B, HKV, T, D]
            attention_mask: torch.Tensor | None,
            scaling: float | None = None,
            dropout: float = 0.0,
            **kwargs: Any,
        ) -> Any:
            req = _REQUEST.get()
            if req is not None and module.layer_idx in req.layers:
                if query.shape[0] != 1:
                    raise RuntimeError("the ctxcomp probe runs one prompt per prefill (batch size 1)")
                scale = scaling if scaling is not None else query.shape[-1] ** -0.5
                req.pending.append(
                    (
                        module.layer_idx,
                        query[0][:, req.q_pos],  # [HQ, M, D]
                        key[0],  # [HKV, N, D]
                        float(scale),
                        kwargs.get("sliding_window"),
                        kwargs.get("softcap"),
                    )
                )
                held = sum(k.numel() * k.element_size() for _, _, k, *_ in req.pending)
                if module.layer_idx == req.deepest or held > _PENDING_BYTES:
                    _flush(req)
                if module.layer_idx == req.deepest:
                    raise _StopForward
            return stock(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )

        AttentionInterface.register(name, probing_attention)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
        _REGISTERED.add(name)
    return name


def token_segments(offsets: Sequence[tuple[int, int]], char_seg: np.ndarray) -> np.ndarray:
    """Assign each token to the sentence holding its last character (or -1).

    Args:
        offsets: ``(start, end)`` char offsets of each token.
        char_seg: Output of :func:`build_prompt`.

    Returns:
        ``[N]`` int64 segment ids.

    Example:
        >>> token_segments([(0, 2), (2, 3), (3, 3)], np.array([-1, 0, 0]))
        array([ 0,  0, -1])
    """
    ends = np.fromiter((e for _, e in offsets), dtype=np.int64, count=len(offsets))  # [N]
    starts = np.fromiter((s for s, _ in offsets), dtype=np.int64, count=len(offsets))  # [N]
    seg = np.full(len(offsets), -1, dtype=np.int64)
    ok = ends > starts
    seg[ok] = char_seg[ends[ok] - 1]
    return seg


def run_probe(
    model: Any,
    input_ids: torch.Tensor,
    seg_ids: np.ndarray,
    num_segments: int,
    *,
    layers: Sequence[int],
    m: int,
    backend: str,
) -> dict[int, np.ndarray]:
    """One truncated prefill returning ``{layer: [HQ, S] attention mass}``.

    Args:
        model: A causal LM loaded with a ``ctxcomp_*`` attention implementation.
        input_ids: ``[1, N]`` prompt ids on the model's device.
        seg_ids: ``[N]`` segment id per token (-1 outside the context).
        num_segments: Number of segments.
        layers: Probe layers (non-negative).
        m: Number of trailing probe rows.
        backend: Kernel backend name.

    Returns:
        Attention mass per probe layer.
    """
    import torch

    n = int(input_ids.shape[1])
    m = min(m, n)
    device = input_ids.device
    req = _Request(
        layers=frozenset(layers),
        deepest=max(layers),
        q_pos=torch.arange(n - m, n, device=device),  # [M]
        seg_ids=torch.from_numpy(seg_ids).to(device),  # [N]
        num_segments=num_segments,
        backend=backend,
    )
    token = _REQUEST.set(req)
    try:
        with torch.inference_mode():
            backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
            backbone(input_ids=input_ids, use_cache=False)
    except _StopForward:
        pass
    finally:
        _REQUEST.reset(token)
    if req.pending:  # the deepest layer was not reached (the forward ended or failed first)
        _flush(req)
    missing = set(layers) - set(req.out)
    if missing:
        raise RuntimeError(
            f"probe layers {sorted(missing)} were not reached; the model's attention does not go through "
            "transformers' AttentionInterface"
        )
    return {li: t.detach().float().cpu().numpy() for li, t in req.out.items()}
