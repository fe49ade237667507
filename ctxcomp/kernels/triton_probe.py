"""Fused Triton probe reduction: the GPU twin of :func:`ctxcomp.kernels.reference.probe_attention_ref`.

Same signature, same semantics (causal + sliding-window visibility, optional tanh soft-capping,
fp32 softmax over every visible key, renormalisation over context tokens, segment sum, mean over
the ``M`` probe rows). No ``M x N`` probability matrix ever reaches memory.

Design: two passes over the keys, then a segment reduction.

* **Pass 1** (``_probe_stats_kernel``) — one program per (key block, kv head). It loads the key
  tile once and, for every query head of the GQA group in turn (all ``G = HQ // HKV`` heads that
  read this kv head are packed in the same program, so the tile is read from HBM once per group),
  computes the masked logits and writes per-block partials: the row max over visible keys and the
  context mass ``sum_ctx exp(l - max_block)``. A few torch ops merge the partials (rescaled by
  ``exp(max_block - max_row)``) into the row max over *all* visible keys and the row's context mass.
* **Pass 2** (``_probe_colsum_kernel``) — same grid; recomputes the logits, forms the renormalised
  probabilities ``exp(l - max_row) / ctx_mass`` on context keys, divides by ``M`` and sums over the
  rows of each head, writing per-token column sums to an ``[HQ, N]`` fp32 buffer (each element
  written exactly once, no atomics).
* **Segment sum** (``_segment_sum_kernel``) — the context tokens are stably sorted by segment id
  and cut into CSR runs (``searchsorted``, no host sync); one program per segment sums its column
  sums in a fixed order. Deterministic, ``O(N)``, and correct for non-contiguous ids.

Why two passes rather than one online-softmax (LSE-rescaling) pass: the per-segment output of a
row needs that row's final normaliser before rows are summed, and a single pass could only defer
the normalisation by keeping a rescalable ``[rows, S]`` accumulator per program — unbounded in
``S`` and impossible to merge across key blocks without atomics. Reading the keys twice costs
little: with ``M`` at most a few dozen rows the kernel is bound by streaming ``K`` (``N*D`` per kv
head), and both passes are fully parallel over key blocks. Note that the full softmax denominator
cancels in the context renormalisation, so pass 1 needs only the global row max (which keeps the
fp32 underflow behaviour of the reference's softmax) and the context mass.

Example:
    >>> import torch
    >>> from ctxcomp.kernels.triton_probe import probe_attention_triton
    >>> q = torch.randn(14, 1, 64, device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
    >>> k = torch.randn(2, 500, 64, device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
    >>> seg = torch.arange(500, device="cuda") // 50 - 1  # doctest: +SKIP
    >>> out = probe_attention_triton(q, k, seg, 9, scale=0.125,
    ...                              q_pos=torch.tensor([499], device="cuda"))  # doctest: +SKIP
    >>> tuple(out.shape)  # doctest: +SKIP
    (14, 9)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from ctxcomp.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = [
    "HAS_TRITON",
    "ProbeBlocks",
    "kernels_interpreted",
    "pick_blocks",
    "probe_attention_fwd",
    "probe_attention_triton",
]


class ProbeBlocks(NamedTuple):
    """Fixed launch configuration of the probe kernels (no autotuning: it breaks the interpreter)."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def pick_blocks(head_dim: int, num_rows: int) -> ProbeBlocks:
    """Choose tile sizes from the head dim and the number of probe rows.

    Args:
        head_dim: ``D``, the attention head dimension.
        num_rows: ``M``, the probe rows per head.

    Returns:
        The block sizes: rows per tile (>= 16 for ``tl.dot``), keys per tile, padded head dim, warps.

    Example:
        >>> pick_blocks(64, 1)
        ProbeBlocks(block_m=16, block_n=64, block_d=64, num_warps=4)
        >>> pick_blocks(256, 33).block_n
        32
    """
    block_d = max(16, _next_pow2(head_dim))
    cap_m = 64 if block_d <= 128 else 32
    block_m = min(max(16, _next_pow2(num_rows)), cap_m)
    block_n = 64 if block_d <= 128 else 32
    return ProbeBlocks(block_m=block_m, block_n=block_n, block_d=block_d, num_warps=4)


if HAS_TRITON:

    @triton.jit
    def _masked_logits(  # type: ignore[no-untyped-def]
        q_tile,
        k_tile,
        pos,
        offs_n,
        scale,
        softcap,
        window,
        HAS_WINDOW: tl.constexpr,
        HAS_SOFTCAP: tl.constexpr,
    ):
        """Scaled (soft-capped) logits of a row tile against a key tile; -inf where not visible."""
        logits = tl.dot(q_tile, tl.trans(k_tile), input_precision="ieee") * scale  # [BLOCK_M, BLOCK_N]
        if HAS_SOFTCAP:
            # tanh(x) = 1 - 2 / (exp(2x) + 1): saturates cleanly at +-1, no NaN for large |x|.
            logits = (1.0 - 2.0 / (tl.exp(2.0 * (logits / softcap)) + 1.0)) * softcap
        visible = offs_n[None, :] <= pos[:, None]  # [BLOCK_M, BLOCK_N]
        if HAS_WINDOW:
            visible = visible & (offs_n[None, :] > pos[:, None] - window)
        return tl.where(visible, logits, float("-inf"))

    @triton.jit
    def _load_rows(  # type: ignore[no-untyped-def]
        q_ptr, qpos_ptr, h, offs_m, offs_d, M, D, stride_qh, stride_qm, DOT_FP32: tl.constexpr
    ):
        """Query tile ``[BLOCK_M, BLOCK_D]`` of rows ``offs_m`` of head ``h``, positions (pad: -1)."""
        row_ok = offs_m < M  # [BLOCK_M]
        q_tile = tl.load(
            q_ptr + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
            mask=row_ok[:, None] & (offs_d[None, :] < D),
            other=0.0,
        )  # [BLOCK_M, BLOCK_D]
        if DOT_FP32:
            q_tile = q_tile.to(tl.float32)
        pos = tl.load(qpos_ptr + offs_m, mask=row_ok, other=-1)  # [BLOCK_M]
        return q_tile, pos

    @triton.jit
    def _probe_stats_kernel(  # type: ignore[no-untyped-def]
        q_ptr,  # [HQ, M, D]
        k_ptr,  # [HKV, N, D]
        seg_ptr,  # [N]
        qpos_ptr,  # [M]
        mpart_ptr,  # [HQ, M, NB] fp32 out: block max of visible logits
        cpart_ptr,  # [HQ, M, NB] fp32 out: block context mass relative to the block max
        N,
        M,
        G,
        NB,
        D,
        stride_qh,
        stride_qm,
        stride_kh,
        stride_kn,
        scale,
        softcap,
        window,
        HAS_WINDOW: tl.constexpr,
        HAS_SOFTCAP: tl.constexpr,
        DOT_FP32: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        kvh = tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        offs_d = tl.arange(0, BLOCK_D)  # [BLOCK_D]
        key_ok = offs_n < N
        k_tile = tl.load(
            k_ptr + kvh * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
            mask=key_ok[:, None] & (offs_d[None, :] < D),
            other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        if DOT_FP32:
            k_tile = k_tile.to(tl.float32)
        seg = tl.load(seg_ptr + offs_n, mask=key_ok, other=-1)  # [BLOCK_N]
        is_ctx = seg >= 0  # [BLOCK_N]
        for g in range(G):
            h = kvh * G + g
            for m0 in range(0, M, BLOCK_M):
                offs_m = m0 + tl.arange(0, BLOCK_M)  # [BLOCK_M]
                q_tile, pos = _load_rows(
                    q_ptr, qpos_ptr, h, offs_m, offs_d, M, D, stride_qh, stride_qm, DOT_FP32
                )
                logits = _masked_logits(
                    q_tile, k_tile, pos, offs_n, scale, softcap, window, HAS_WINDOW, HAS_SOFTCAP
                )  # [BLOCK_M, BLOCK_N]
                m_blk = tl.max(logits, axis=1)  # [BLOCK_M], -inf when the row sees no key here
                m_ref = tl.where(m_blk == float("-inf"), 0.0, m_blk)  # [BLOCK_M]
                e = tl.exp(logits - m_ref[:, None])  # [BLOCK_M, BLOCK_N], 0 where invisible
                c_blk = tl.sum(tl.where(is_ctx[None, :], e, 0.0), axis=1)  # [BLOCK_M]
                dst = (h * M + offs_m) * NB + pid_n  # [BLOCK_M]
                tl.store(mpart_ptr + dst, m_blk, mask=offs_m < M)
                tl.store(cpart_ptr + dst, c_blk, mask=offs_m < M)

    @triton.jit
    def _probe_colsum_kernel(  # type: ignore[no-untyped-def]
        q_ptr,  # [HQ, M, D]
        k_ptr,  # [HKV, N, D]
        seg_ptr,  # [N]
        qpos_ptr,  # [M]
        mrow_ptr,  # [HQ, M] fp32: row max over all visible keys (0 when none)
        inv_ptr,  # [HQ, M] fp32: 1 / (M * context mass), 0 for rows that see no context
        colsum_ptr,  # [HQ, N] fp32 out
        N,
        M,
        G,
        D,
        stride_qh,
        stride_qm,
        stride_kh,
        stride_kn,
        scale,
        softcap,
        window,
        HAS_WINDOW: tl.constexpr,
        HAS_SOFTCAP: tl.constexpr,
        DOT_FP32: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        kvh = tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
        offs_d = tl.arange(0, BLOCK_D)  # [BLOCK_D]
        key_ok = offs_n < N
        k_tile = tl.load(
            k_ptr + kvh * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
            mask=key_ok[:, None] & (offs_d[None, :] < D),
            other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        if DOT_FP32:
            k_tile = k_tile.to(tl.float32)
        seg = tl.load(seg_ptr + offs_n, mask=key_ok, other=-1)  # [BLOCK_N]
        is_ctx = seg >= 0  # [BLOCK_N]
        for g in range(G):
            h = kvh * G + g
            col = tl.zeros([BLOCK_N], dtype=tl.float32)  # [BLOCK_N]
            for m0 in range(0, M, BLOCK_M):
                offs_m = m0 + tl.arange(0, BLOCK_M)  # [BLOCK_M]
                q_tile, pos = _load_rows(
                    q_ptr, qpos_ptr, h, offs_m, offs_d, M, D, stride_qh, stride_qm, DOT_FP32
                )
                logits = _masked_logits(
                    q_tile, k_tile, pos, offs_n, scale, softcap, window, HAS_WINDOW, HAS_SOFTCAP
                )  # [BLOCK_M, BLOCK_N]
                m_row = tl.load(mrow_ptr + h * M + offs_m, mask=offs_m < M, other=0.0)  # [BLOCK_M]
                inv = tl.load(inv_ptr + h * M + offs_m, mask=offs_m < M, other=0.0)  # [BLOCK_M]
                p = tl.exp(logits - m_row[:, None]) * inv[:, None]  # [BLOCK_M, BLOCK_N]
                p = tl.where(is_ctx[None, :], p, 0.0)
                col += tl.sum(p, axis=0)
            tl.store(colsum_ptr + h * N + offs_n, col, mask=key_ok)

    @triton.jit
    def _segment_sum_kernel(  # type: ignore[no-untyped-def]
        colsum_ptr,  # [HQ, N] fp32
        tok_ptr,  # [N] int64: token indices sorted by segment id (stable)
        bounds_ptr,  # [S + 1] int64: CSR offsets of each segment in tok
        out_ptr,  # [HQ, S] fp32 out
        HQ,
        N,
        S,
        BLOCK_H: tl.constexpr,
        BLOCK_T: tl.constexpr,
    ):
        s = tl.program_id(0)
        offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # [BLOCK_H]
        head_ok = offs_h < HQ
        start = tl.load(bounds_ptr + s)
        end = tl.load(bounds_ptr + s + 1)
        acc = tl.zeros([BLOCK_H, BLOCK_T], dtype=tl.float32)  # [BLOCK_H, BLOCK_T]
        for t0 in range(start, end, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)  # [BLOCK_T]
            tok = tl.load(tok_ptr + offs_t, mask=offs_t < end, other=0)  # [BLOCK_T]
            acc += tl.load(
                colsum_ptr + offs_h[:, None] * N + tok[None, :],
                mask=head_ok[:, None] & (offs_t < end)[None, :],
                other=0.0,
            )  # [BLOCK_H, BLOCK_T]
        tl.store(out_ptr + offs_h * S + s, tl.sum(acc, axis=1), mask=head_ok)


def kernels_interpreted() -> bool:
    """Whether the kernels were built for Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import).

    Returns:
        ``True`` when the module's kernels run in the interpreter, ``False`` when compiled or absent.

    Example:
        >>> isinstance(kernels_interpreted(), bool)
        True
    """
    if not HAS_TRITON:
        return False
    # Triton's own jit helpers (tl.max, tl.sum) must be interpreted too: TRITON_INTERPRET=1 has to
    # be set before triton itself is imported, not only before this module.
    return all(type(f).__name__ == "InterpretedFunction" for f in (_probe_stats_kernel, tl.max))


def _check_launchable(device_type: str) -> None:
    if not HAS_TRITON:
        raise MissingDependencyError("triton", "triton", "The Triton probe kernel")
    if device_type != "cuda" and not kernels_interpreted():
        raise ConfigError(
            "kernel_backend",
            f"the Triton kernel got {device_type} tensors but was compiled for a GPU "
            "(TRITON_INTERPRET was not set when triton was imported)",
            "pass CUDA tensors, use kernel_backend='torch', or set TRITON_INTERPRET=1 before importing it",
        )


def probe_attention_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    seg_ids: torch.Tensor,
    num_segments: int,
    *,
    scale: float,
    q_pos: torch.Tensor,
    window: int | None = None,
    softcap: float | None = None,
    out: torch.Tensor | None = None,
    poison: bool = False,
    blocks: ProbeBlocks | None = None,
) -> torch.Tensor:
    """Launch the three probe kernels; :func:`probe_attention_triton` plus buffer control.

    Args:
        q: ``[HQ, M, D]`` probe-row queries after RoPE (fp16, bf16 or fp32; others run as fp32).
        k: ``[HKV, N, D]`` keys after RoPE; ``HQ % HKV == 0``.
        seg_ids: ``[N]`` integer segment ids, ``-1`` outside the context; ids must be ``< S``
            (not checked on the device, which would cost a host sync; larger ids are ignored).
        num_segments: Number of output bins ``S``.
        scale: Softmax scale.
        q_pos: ``[M]`` absolute positions of the probe rows.
        window: Sliding window of the layer, or ``None``.
        softcap: Logit soft-capping value, or ``None``.
        out: Optional ``[HQ, S]`` float32 contiguous tensor to write the result into.
        poison: Fill every intermediate buffer and ``out`` with NaN before launching, so a test
            catches any element a kernel forgets to write.
        blocks: Launch configuration; default :func:`pick_blocks` of ``D`` and ``M``.

    Returns:
        ``[HQ, S]`` float32 (``out`` when given).

    Example:
        >>> import torch
        >>> q = torch.randn(4, 2, 64, device="cuda")  # doctest: +SKIP
        >>> k = torch.randn(2, 100, 64, device="cuda")  # doctest: +SKIP
        >>> seg = torch.arange(100, device="cuda") // 10  # doctest: +SKIP
        >>> pos = torch.tensor([98, 99], device="cuda")  # doctest: +SKIP
        >>> out = probe_attention_fwd(q, k, seg, 10, scale=0.125, q_pos=pos, poison=True)  # doctest: +SKIP
        >>> bool(out.isnan().any())  # doctest: +SKIP
        False
    """
    _check_launchable(q.device.type)
    import torch

    hq, m, d = q.shape  # [HQ, M, D]
    hkv, n, dk = k.shape  # [HKV, N, D]
    if hq % hkv != 0:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hkv})")
    if dk != d:
        raise ValueError(f"q head dim ({d}) differs from k head dim ({dk})")
    s = int(num_segments)
    device = q.device
    if out is None:
        out = torch.empty(hq, s, dtype=torch.float32, device=device)  # [HQ, S]
    elif out.shape != (hq, s) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 tensor of shape {(hq, s)}")
    if poison:
        out.fill_(float("nan"))
    if n == 0 or m == 0 or s == 0 or d == 0:
        return out.zero_()

    dtype = torch.promote_types(q.dtype, k.dtype)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        dtype = torch.float32
    qc = q.to(dtype).contiguous()  # [HQ, M, D]
    kc = k.to(dtype).contiguous()  # [HKV, N, D]
    seg = seg_ids.to(device=device, dtype=torch.int32).contiguous()  # [N]
    pos = q_pos.to(device=device, dtype=torch.int32).contiguous()  # [M]
    cfg = blocks if blocks is not None else pick_blocks(d, m)
    group = hq // hkv
    nb = triton.cdiv(n, cfg.block_n)
    has_window = window is not None
    has_softcap = softcap is not None
    common: dict[str, Any] = {
        "HAS_WINDOW": has_window,
        "HAS_SOFTCAP": has_softcap,
        # The interpreter multiplies bf16 tiles as raw uint16 bits; upcast there. On the GPU the
        # 16-bit tensor-core dot is exact anyway (products of 16-bit floats fit in fp32).
        "DOT_FP32": device.type != "cuda",
        "BLOCK_M": cfg.block_m,
        "BLOCK_N": cfg.block_n,
        "BLOCK_D": cfg.block_d,
        "num_warps": cfg.num_warps,
    }
    win = int(window) if window is not None else 0
    cap = float(softcap) if softcap is not None else 1.0

    # Pass 1: per-block row max and context mass.
    mpart = torch.empty(hq, m, nb, dtype=torch.float32, device=device)  # [HQ, M, NB]
    cpart = torch.empty(hq, m, nb, dtype=torch.float32, device=device)  # [HQ, M, NB]
    if poison:
        mpart.fill_(float("nan"))
        cpart.fill_(float("nan"))
    _probe_stats_kernel[(nb, hkv)](
        qc, kc, seg, pos, mpart, cpart,
        n, m, group, nb, d,
        qc.stride(0), qc.stride(1), kc.stride(0), kc.stride(1),
        float(scale), cap, win,
        **common,
    )  # fmt: skip

    # Merge the block partials (fixed-order torch reductions: deterministic).
    m_row = mpart.amax(dim=-1)  # [HQ, M]
    seen = torch.isfinite(m_row)  # [HQ, M]
    m_row = torch.where(seen, m_row, torch.zeros_like(m_row))  # [HQ, M]
    weight = torch.exp(mpart - m_row[..., None])  # [HQ, M, NB], 0 for blocks with no visible key
    ctx_mass = (cpart * weight).sum(dim=-1)  # [HQ, M]
    inv = torch.where(ctx_mass > 0, 1.0 / (ctx_mass.clamp_min(1e-30) * m), torch.zeros_like(ctx_mass))

    # Pass 2: renormalised probabilities summed over each head's rows, per key.
    colsum = torch.empty(hq, n, dtype=torch.float32, device=device)  # [HQ, N]
    if poison:
        colsum.fill_(float("nan"))
    _probe_colsum_kernel[(nb, hkv)](
        qc, kc, seg, pos, m_row.contiguous(), inv.contiguous(), colsum,
        n, m, group, d,
        qc.stride(0), qc.stride(1), kc.stride(0), kc.stride(1),
        float(scale), cap, win,
        **common,
    )  # fmt: skip

    # Segment sum: stable sort by id (non-context last), CSR bounds, one program per segment.
    key = torch.where(seg >= 0, seg, torch.full_like(seg, s))  # [N]
    sorted_ids, tok = torch.sort(key, stable=True)  # [N], [N]
    bounds = torch.searchsorted(
        sorted_ids, torch.arange(s + 1, device=device, dtype=sorted_ids.dtype)
    )  # [S + 1]
    block_h = min(32, _next_pow2(hq))
    _segment_sum_kernel[(s, triton.cdiv(hq, block_h))](
        colsum, tok.contiguous(), bounds.contiguous(), out, hq, n, s, BLOCK_H=block_h, BLOCK_T=32
    )
    return out


def probe_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    seg_ids: torch.Tensor,
    num_segments: int,
    *,
    scale: float,
    q_pos: torch.Tensor,
    window: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Per-segment context attention of the probe rows, fused in Triton.

    Same contract as :func:`ctxcomp.kernels.reference.probe_attention_ref`; runs on CUDA tensors,
    or on CPU tensors under ``TRITON_INTERPRET=1`` (slow; for tests).

    Args:
        q: ``[HQ, M, D]`` queries of the probe rows, after RoPE.
        k: ``[HKV, N, D]`` keys of the whole prompt, after RoPE; ``HQ % HKV == 0`` (GQA: query
            head ``h`` reads kv head ``h // (HQ // HKV)``).
        seg_ids: ``[N]`` integer segment id of each key, ``-1`` for non-context tokens.
        num_segments: Number of output bins ``S``; ids must be ``< S``.
        scale: Softmax scale (usually ``D ** -0.5``).
        q_pos: ``[M]`` absolute positions of the probe rows (keys ``j <= q_pos`` are visible).
        window: Sliding window of the layer (keys ``j <= q_pos - window`` are invisible), or ``None``.
        softcap: Attention logit soft-capping value, or ``None``.

    Returns:
        ``[HQ, S]`` float32: context-renormalised attention summed per segment, mean over rows.

    Raises:
        MissingDependencyError: Triton is not installed.
        ConfigError: CPU tensors while the kernels were compiled for a GPU (no ``TRITON_INTERPRET=1``).

    Example:
        >>> import torch
        >>> q = torch.randn(14, 4, 64, device="cuda", dtype=torch.float16)  # doctest: +SKIP
        >>> k = torch.randn(2, 300, 64, device="cuda", dtype=torch.float16)  # doctest: +SKIP
        >>> seg = torch.arange(300, device="cuda") // 30  # doctest: +SKIP
        >>> pos = torch.arange(296, 300, device="cuda")  # doctest: +SKIP
        >>> out = probe_attention_triton(q, k, seg, 10, scale=0.125, q_pos=pos)  # doctest: +SKIP
        >>> bool(torch.allclose(out.sum(-1), torch.ones(14, device="cuda")))  # doctest: +SKIP
        True
    """
    return probe_attention_fwd(
        q, k, seg_ids, num_segments, scale=scale, q_pos=q_pos, window=window, softcap=softcap
    )
