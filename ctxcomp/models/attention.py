"""The probing attention function: one truncated prefill that reads what chosen positions attend to.

A custom attention function, registered with transformers' ``AttentionInterface`` (and the
matching mask function with ``AttentionMaskInterface``), delegates the model's own attention to
the stock SDPA / flash-attention function, and on the probe layers also hands the post-RoPE
queries of the probe rows and the layer's keys to :func:`ctxcomp.kernels.probe_attention`.
Forward hooks on the decoder layers (:func:`install_hidden_hooks`) pool the hidden states of
chosen layers per segment. The forward pass raises a private exception right after the deepest
layer it needs, so deeper layers and the LM head never run.

A prefill may hold several prompts (rows of a left-padded batch); each row has its own segment
map and its own groups of probe rows (e.g. the last token, or every question token).

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
    """Raised after the deepest layer a probe needs, to end the forward pass early."""


@dataclass
class ProbeRow:
    """What one row of a probed prefill asks for.

    Attributes:
        seg_ids: ``[N]`` int64 segment id of every token of the (padded) row, -1 outside segments.
        num_segments: Number of segments ``S`` of the row.
        groups: Probe-row positions per group, each an int64 array of absolute positions.
    """

    seg_ids: np.ndarray
    num_segments: int
    groups: Sequence[np.ndarray]


@dataclass
class RowResult:
    """What one row of a probed prefill measured.

    Attributes:
        mass: ``{layer: [G, HQ, S]}`` context-renormalised attention per segment of each probe-row
            group, averaged over the group's rows.
        hidden: ``{layer: [S, D]}`` mean hidden state (the decoder layer's output) of each segment.
        group_hidden: ``{layer: [G, D]}`` mean hidden state over each probe-row group's positions.
    """

    mass: dict[int, np.ndarray] = field(default_factory=dict)
    hidden: dict[int, np.ndarray] = field(default_factory=dict)
    group_hidden: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class _Request:
    layers: frozenset[int]
    hidden_layers: frozenset[int]
    stop_layer: int
    stop_in_attention: bool
    rows: list[ProbeRow]
    seg: list[torch.Tensor]  # per row [N]
    pos: list[list[torch.Tensor]]  # per row, per group [M_g]
    backend: str
    out: list[dict[int, torch.Tensor]] = field(default_factory=list)  # per row {layer: [G, HQ, S]}
    hidden: list[RowResult] = field(default_factory=list)
    # (layer, per-row per-group q [HQ, M_g, D], per-row k [HKV, N, D], scale, window, softcap)
    pending: list[
        tuple[int, list[list[torch.Tensor]], list[torch.Tensor], float, int | None, float | None]
    ] = field(default_factory=list)


# Largest [heads, M, N] probability block one batched reduction may cover (the torch reference
# materialises it in fp32): 2^26 elements = 256 MiB.
_BATCH_ELEMENTS = 1 << 26
# Keys held for the batched reduction are flushed early past this many bytes (long contexts read
# at many layers, e.g. a reader's full-depth attention for reordering).
_PENDING_BYTES = 1 << 28


def _flush(req: _Request) -> None:
    """Reduce every pending probe layer, batching layers as extra heads (per row and row group).

    Stacking L layers' queries ``[L*HQ, M, D]`` and keys ``[L*HKV, N, D]`` keeps the GQA mapping
    (query head ``l*HQ + h`` reads kv head ``l*HKV + h // group``), so one kernel launch serves
    all layers that share scale, window and soft-cap: launch overhead is paid once per row and
    group instead of once per layer.
    """
    import torch

    from ctxcomp.kernels import probe_attention

    keyed: dict[tuple[float, int | None, float | None, torch.dtype, tuple[int, ...]], list[int]] = {}
    for i, (_, _, ks, scale, window, softcap) in enumerate(req.pending):
        keyed.setdefault((scale, window, softcap, ks[0].dtype, tuple(ks[0].shape)), []).append(i)
    for (scale, window, softcap, _, _), idx in keyed.items():
        for b, row in enumerate(req.rows):
            for g in range(len(row.groups)):
                hq, m, _ = req.pending[idx[0]][1][b][g].shape
                n = req.pending[idx[0]][2][b].shape[1]
                per_call = max(1, _BATCH_ELEMENTS // max(hq * max(m, 1) * n, 1))
                for a in range(0, len(idx), per_call):
                    chunk = [req.pending[i] for i in idx[a : a + per_call]]
                    q = torch.cat([c[1][b][g] for c in chunk]) if len(chunk) > 1 else chunk[0][1][b][g]
                    k = torch.cat([c[2][b] for c in chunk]) if len(chunk) > 1 else chunk[0][2][b]
                    out = probe_attention(
                        q,  # [L*HQ, M, D]
                        k,  # [L*HKV, N, D]
                        req.seg[b],
                        row.num_segments,
                        scale=scale,
                        q_pos=req.pos[b][g],
                        window=window,
                        softcap=softcap,
                        backend=req.backend,  # type: ignore[arg-type]
                    )  # [L*HQ, S]
                    for j, c in enumerate(chunk):
                        per_layer = req.out[b].setdefault(
                            c[0],
                            torch.zeros(
                                len(row.groups), hq, row.num_segments, dtype=torch.float32, device=out.device
                            ),
                        )  # [G, HQ, S]
                        per_layer[g] = out[j * hq : (j + 1) * hq]
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
                if query.shape[0] != len(req.rows):
                    raise RuntimeError(
                        f"the probe expected {len(req.rows)} rows, the model ran {query.shape[0]}"
                    )
                scale = scaling if scaling is not None else query.shape[-1] ** -0.5
                qs = [[query[b][:, p] for p in req.pos[b]] for b in range(len(req.rows))]  # [HQ, M_g, D]
                ks = [key[b] for b in range(len(req.rows))]  # [HKV, N, D]
                req.pending.append(
                    (
                        module.layer_idx,
                        qs,
                        ks,
                        float(scale),
                        kwargs.get("sliding_window"),
                        kwargs.get("softcap"),
                    )
                )
                held = sum(k.numel() * k.element_size() for _, _, kk, *_ in req.pending for k in kk)
                if module.layer_idx == req.stop_layer or held > _PENDING_BYTES:
                    _flush(req)
                if req.stop_in_attention and module.layer_idx == req.stop_layer:
                    raise _StopForward
            return stock(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )

        AttentionInterface.register(name, probing_attention)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
        _REGISTERED.add(name)
    return name


def _hidden_hook(layer_idx: int) -> Any:
    """Forward hook of decoder layer ``layer_idx``: pool its output per segment and per row group."""

    def hook(module: Any, args: Any, output: Any) -> None:
        req = _REQUEST.get()
        if req is None:
            return
        if layer_idx in req.hidden_layers:
            import torch

            h = output[0] if isinstance(output, tuple) else output  # [B, N, D]
            for b, row in enumerate(req.rows):
                seg = req.seg[b]  # [N]
                ok = seg >= 0
                sums = torch.zeros(row.num_segments, h.shape[-1], dtype=torch.float32, device=h.device)
                sums.index_add_(0, seg[ok], h[b][ok].float())  # [S, D]
                counts = torch.bincount(seg[ok], minlength=row.num_segments).clamp_min(1)  # [S]
                res = req.hidden[b]
                res.hidden[layer_idx] = (sums / counts[:, None]).cpu().numpy()
                res.group_hidden[layer_idx] = (
                    torch.stack([h[b][p].float().mean(0) for p in req.pos[b]]).cpu().numpy()  # [G, D]
                )
        if not req.stop_in_attention and layer_idx == req.stop_layer:
            if req.pending:
                _flush(req)
            raise _StopForward

    return hook


def install_hidden_hooks(model: Any) -> None:
    """Put the pooling hook on every decoder layer of ``model`` (once; idle unless a probe asks).

    Args:
        model: A transformers causal LM (its decoder's ``layers``).

    Example:
        >>> install_hidden_hooks(model)  # doctest: +SKIP
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    if getattr(decoder, "ctxcomp_hidden_hooks", False):
        return
    for i, layer in enumerate(decoder.layers):
        layer.register_forward_hook(_hidden_hook(i))
    decoder.ctxcomp_hidden_hooks = True


def token_segments(offsets: Sequence[tuple[int, int]], char_seg: np.ndarray) -> np.ndarray:
    """Assign each token to the segment holding its last character (or -1).

    Args:
        offsets: ``(start, end)`` char offsets of each token.
        char_seg: ``[C]`` segment id of every character, -1 outside segments.

    Returns:
        ``[N]`` int64 segment ids.

    Example:
        >>> token_segments([(0, 1), (1, 3)], np.array([0, -1, 1]))
        array([0, 1])
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
    rows: Sequence[ProbeRow],
    *,
    layers: Sequence[int],
    backend: str,
    attention_mask: torch.Tensor | None = None,
    hidden_layers: Sequence[int] = (),
) -> list[RowResult]:
    """One truncated prefill of a (left-padded) batch, returning what each row's probe measured.

    Args:
        model: A causal LM loaded with a ``ctxcomp_*`` attention implementation (and, for
            ``hidden_layers``, :func:`install_hidden_hooks`).
        input_ids: ``[B, N]`` prompt ids on the model's device, left-padded.
        rows: One :class:`ProbeRow` per batch row.
        layers: Probe layers (non-negative).
        backend: Kernel backend name.
        attention_mask: ``[B, N]`` 1 for real tokens, 0 for padding (``None``: no padding).
        hidden_layers: Layers whose outputs are pooled per segment.

    Returns:
        One :class:`RowResult` per row.
    """
    import torch

    if not layers and not hidden_layers:
        raise ValueError("run_probe needs at least one probe layer or hidden layer")
    device = input_ids.device
    deepest_att = max(layers) if layers else -1
    deepest_hidden = max(hidden_layers) if hidden_layers else -1
    req = _Request(
        layers=frozenset(layers),
        hidden_layers=frozenset(hidden_layers),
        stop_layer=max(deepest_att, deepest_hidden),
        stop_in_attention=deepest_att > deepest_hidden,
        rows=list(rows),
        seg=[torch.from_numpy(r.seg_ids).to(device) for r in rows],
        pos=[[torch.from_numpy(np.asarray(p, dtype=np.int64)).to(device) for p in r.groups] for r in rows],
        backend=backend,
        out=[{} for _ in rows],
        hidden=[RowResult() for _ in rows],
    )
    kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": False}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
        kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # [B, N]
    token = _REQUEST.set(req)
    try:
        with torch.inference_mode():
            backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
            backbone(**kwargs)
    except _StopForward:
        pass
    finally:
        _REQUEST.reset(token)
    if req.pending:  # the stop layer was not reached (the forward ended or failed first)
        _flush(req)
    results = []
    for b in range(len(rows)):
        missing = (set(layers) - set(req.out[b])) | (set(hidden_layers) - set(req.hidden[b].hidden))
        if missing:
            raise RuntimeError(
                f"probe layers {sorted(missing)} were not reached; the model's attention does not go "
                "through transformers' AttentionInterface (or its decoder layers have no hooks)"
            )
        res = req.hidden[b]
        res.mass = {li: t.cpu().numpy() for li, t in req.out[b].items()}
        results.append(res)
    return results
