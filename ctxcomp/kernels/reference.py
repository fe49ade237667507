"""PyTorch reference of the probe reduction: the source of truth for every other backend.

Given the post-RoPE queries of the last ``M`` prompt positions and all keys of one layer, it
computes for every query head the attention each context *segment* (sentence) receives:

1. logits ``q @ k^T * scale`` (optional tanh soft-capping), masked causally and by the layer's
   sliding window: key ``j`` is visible from query position ``p`` iff ``p - window < j <= p``;
2. a row softmax in fp32 over all visible keys (exactly what the model computes);
3. renormalisation over context tokens (``seg_ids >= 0``), which removes the attention-sink and
   question/template mass; a row that sees no context token contributes zeros;
4. a segment sum into ``num_segments`` bins, averaged over the ``M`` rows.

No ``M x N`` probability matrix is kept beyond one chunk of keys' worth of work per call; at
``M`` rows it is small anyway (``M`` is at most a few dozen), so the reference stays simple.

Example:
    >>> import torch
    >>> q = torch.randn(4, 1, 8); k = torch.randn(2, 5, 8)
    >>> seg = torch.tensor([-1, 0, 0, 1, -1])
    >>> out = probe_attention_ref(q, k, seg, 2, scale=8**-0.5, q_pos=torch.tensor([4]))
    >>> out.shape, bool(torch.allclose(out.sum(-1), torch.ones(4)))
    (torch.Size([4, 2]), True)
"""

from __future__ import annotations

import torch


def probe_attention_ref(
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
    """Per-segment context attention of the probe rows (reference implementation).

    Args:
        q: ``[HQ, M, D]`` queries of the probe rows, after RoPE, any float dtype.
        k: ``[HKV, N, D]`` keys of the whole prompt, after RoPE; ``HQ % HKV == 0`` (GQA: query
            head ``h`` reads kv head ``h // (HQ // HKV)``).
        seg_ids: ``[N]`` integer segment id of each key, ``-1`` for non-context tokens.
        num_segments: Number of output bins ``S``; ids must be ``< S``.
        scale: Softmax scale (usually ``D ** -0.5``).
        q_pos: ``[M]`` absolute positions of the probe rows in the prompt (keys ``j <= q_pos`` are visible).
        window: Sliding window of the layer (keys with ``j <= q_pos - window`` are invisible), or ``None``.
        softcap: Attention logit soft-capping value, or ``None``.

    Returns:
        ``[HQ, S]`` float32: context-renormalised attention summed per segment, mean over rows.
        Each row of a head sums to 1 over segments when it sees any context token.
    """
    hq, m, d = q.shape  # [HQ, M, D]
    hkv, n, _ = k.shape  # [HKV, N, D]
    if hq % hkv != 0:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hkv})")
    group = hq // hkv
    out = torch.zeros(hq, num_segments, dtype=torch.float32, device=q.device)  # [HQ, S]
    if n == 0 or m == 0 or num_segments == 0:
        return out
    qf = q.float().reshape(hkv, group * m, d)  # [HKV, G*M, D]
    logits = torch.matmul(qf, k.float().transpose(-1, -2)) * scale  # [HKV, G*M, N]
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    j = torch.arange(n, device=q.device)  # [N]
    pos = q_pos.to(q.device).long()  # [M]
    visible = j[None, :] <= pos[:, None]  # [M, N]
    if window is not None:
        visible &= j[None, :] > (pos[:, None] - window)
    visible_g = visible.repeat(group, 1)  # [G*M, N]
    logits = logits.masked_fill(~visible_g[None], float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # [HKV, G*M, N]
    probs = torch.nan_to_num(probs, nan=0.0)
    ctx = (seg_ids >= 0).to(q.device)  # [N]
    probs = probs * ctx[None, None, :].float()
    denom = probs.sum(-1, keepdim=True)  # [HKV, G*M, 1]
    probs = torch.where(denom > 0, probs / denom.clamp_min(1e-30), torch.zeros_like(probs))
    idx = seg_ids.clamp_min(0).long().to(q.device)  # [N]
    binned = torch.zeros(hkv, group * m, num_segments, dtype=torch.float32, device=q.device)
    binned.index_add_(2, idx, probs)  # [HKV, G*M, S]
    return binned.reshape(hq, m, num_segments).mean(dim=1)  # [HQ, S]
