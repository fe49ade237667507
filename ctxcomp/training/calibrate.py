"""Calibrating a reader's positional attention profile (``ctxcomp calibrate``).

:func:`calibrate` measures a :class:`~ctxcomp.compressors.profile.PositionProfile` with the
attention probe (one segment per document slot, every layer) over ``N`` prompts of ``K``
documents. Content effects are averaged out by cyclically rotating each prompt's documents
through the slots (all ``K`` rotations, or a balanced Latin-square subset: prompt ``p`` uses
offsets ``p, p + K/R, ...``). Intervals are bootstrap percentiles over prompts.

Example:
    >>> rotate(["a", "b", "c"], 1)
    ['c', 'a', 'b']
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.profile import PositionProfile
from ctxcomp.compressors.reader import Reader
from ctxcomp.errors import InputError
from ctxcomp.training.qa import has_answer, iter_jsonl, passage, split_of

logger = logging.getLogger(__name__)


class CalibrationWarning(UserWarning):
    """The calibration data is too small for stable per-slot estimates."""


@dataclass(frozen=True)
class CalibrationPrompt:
    """One calibration prompt: a question and its documents (documents are rotated through slots).

    Attributes:
        query: The question.
        docs: ``K`` document texts.
    """

    query: str
    docs: tuple[str, ...]


def load_calibration_data(
    path: str | Path, *, k: int, n: int, seed: int = 0, records_per_doc: int = 1
) -> tuple[list[CalibrationPrompt], str, str]:
    """Build ``n`` prompts of ``k`` documents from a JSONL file.

    Three formats are recognised from the first record:

    * kv-retrieval (``ordered_kv_records``/``key``/``value``): each document holds
      ``records_per_doc`` key-value records; one of them holds the queried key.
    * NQ-open (``question``/``ctxs``): the gold passage plus ``k - 1`` other questions' passages
      that contain no answer string (seeded choice). Only the training split of the benchmarks
      (``sha256(question) % 5 != 0``) is used, so evaluation questions stay unseen.
    * your own: ``{"query": str, "docs": [str | {"text": str}, ...]}``; the first ``k`` documents
      are used and lines with fewer are skipped.

    Args:
        path: The file (``.gz`` is decompressed).
        k: Documents per prompt.
        n: Number of prompts wanted.
        seed: Seed of the document choices.
        records_per_doc: kv-retrieval records per document.

    Returns:
        ``(prompts, data_hash, kind)``: the prompts (possibly fewer than ``n``), the sha256 of their
        canonical JSON, and ``"kv"``, ``"nq"`` or ``"jsonl"``.

    Raises:
        InputError: Unreadable file, unknown format, or no usable prompt.

    Example:
        >>> prompts, h, kind = load_calibration_data("kv.jsonl.gz", k=10, n=20)  # doctest: +SKIP
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(
            "--slots", f"must be an int >= 1, got {k!r}", "pass the number of document slots, e.g. 10"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("--n", f"must be an int >= 1, got {n!r}", "pass the number of calibration prompts")
    p = Path(path)
    rows = list(iter_jsonl(p))
    if not rows:
        raise InputError("--data", f"{str(p)!r} has no records", "pass a non-empty JSONL file")
    first = rows[0][1]
    rng = random.Random(seed)
    prompts: list[CalibrationPrompt] = []
    skipped = 0
    if isinstance(first, dict) and "ordered_kv_records" in first:
        kind = "kv"
        per = max(1, int(records_per_doc))
        for _, r in rows:
            recs = [tuple(x) for x in r["ordered_kv_records"]]
            gold = next((i for i, (key, _) in enumerate(recs) if key == r["key"]), None)
            if gold is None or len(recs) < k * per:
                skipped += 1
                continue
            others = [i for i in range(len(recs)) if i != gold]
            chosen = rng.sample(others, k * per - 1)
            slot_in_doc = rng.randrange(per)
            gold_recs = chosen[: per - 1]
            gold_recs.insert(slot_in_doc, gold)
            groups = [gold_recs] + [chosen[per - 1 + j * per : per - 1 + (j + 1) * per] for j in range(k - 1)]
            docs = tuple("\n".join(f'Key: "{recs[i][0]}" Value: "{recs[i][1]}"' for i in g) for g in groups)
            prompts.append(CalibrationPrompt(f'What is the value of key "{r["key"]}"?', docs))
            if len(prompts) == n:
                break
    elif isinstance(first, dict) and "question" in first and "ctxs" in first:
        kind = "nq"

        passages = [passage(r["ctxs"][0]) for _, r in rows]
        for qi, (_, r) in enumerate(rows):
            if split_of(r["question"]) != "train":
                continue
            answers = list(r.get("answers", []))
            picks: list[str] = []
            tries = 0
            while len(picks) < k - 1 and tries < 50 * k:
                tries += 1
                j = rng.randrange(len(passages))
                cand = passages[j]
                if j == qi or cand == passages[qi] or cand in picks:
                    continue
                if has_answer(cand, answers):
                    continue
                picks.append(cand)
            if len(picks) < k - 1:
                skipped += 1
                continue
            prompts.append(CalibrationPrompt(str(r["question"]), (passages[qi], *picks)))
            if len(prompts) == n:
                break
    elif isinstance(first, dict) and "query" in first and "docs" in first:
        kind = "jsonl"
        for lineno, r in rows:
            if (
                not isinstance(r, dict)
                or not isinstance(r.get("query"), str)
                or not isinstance(r.get("docs"), list)
            ):
                raise InputError(
                    f"{p}:{lineno}",
                    "needs a string 'query' and a list 'docs'",
                    'write {"query": "...", "docs": ["...", ...]}',
                )
            docs_raw = r["docs"]
            texts = []
            for j, d in enumerate(docs_raw):
                t = d.get("text") if isinstance(d, dict) else d
                if not isinstance(t, str):
                    raise InputError(
                        f"{p}:{lineno}.docs[{j}]", "must be a string or {'text': str}", "fix the record"
                    )
                texts.append(t)
            if len(texts) < k:
                skipped += 1
                continue
            prompts.append(CalibrationPrompt(r["query"], tuple(texts[:k])))
            if len(prompts) == n:
                break
    else:
        raise InputError(
            "--data",
            f"{str(p)!r} is not a known format (first record keys: "
            f"{sorted(first) if isinstance(first, dict) else type(first).__name__})",
            'pass kv-retrieval or NQ-open JSONL from the shared data, or lines of {"query", "docs"}',
        )
    if skipped:
        logger.info("skipped %d records of %s that could not give %d documents", skipped, p, k)
    if not prompts:
        raise InputError(
            "--data", f"{str(p)!r} gave no prompt with {k} documents", "pass more documents per record"
        )
    canon = json.dumps([[q.query, list(q.docs)] for q in prompts], ensure_ascii=False, separators=(",", ":"))
    return prompts, hashlib.sha256(canon.encode("utf-8")).hexdigest(), kind


# ---------------------------------------------------------------------------------------------- calibrate
def rotation_offsets(prompt_index: int, k: int, rotations: int) -> list[int]:
    """Cyclic offsets used for one prompt: all ``k``, or a balanced Latin-square subset.

    Prompt ``p`` with ``R < k`` rotations uses offsets ``p, p + k/R, p + 2k/R, ... (mod k)``, so
    over consecutive prompts every offset is used equally often.

    Args:
        prompt_index: Index ``p`` of the prompt.
        k: Number of slots.
        rotations: Rotations per prompt (clipped to ``[1, k]``).

    Returns:
        The offsets (document 0 goes to slot ``offset``).

    Example:
        >>> rotation_offsets(3, 10, 2)
        [3, 8]
    """
    r = max(1, min(k, rotations))
    if r == k:
        return list(range(k))
    return sorted({(prompt_index + (j * k) // r) % k for j in range(r)})


def rotate(docs: Sequence[str], offset: int) -> list[str]:
    """Rotate documents so that document 0 lands in slot ``offset``.

    Args:
        docs: The documents.
        offset: Target slot of document 0.

    Returns:
        The rotated list.

    Example:
        >>> rotate(["a", "b", "c"], 1)
        ['c', 'a', 'b']
    """
    k = len(docs)
    if k == 0:
        return []
    o = offset % k
    return list(docs[k - o :]) + list(docs[: k - o])


def layer_groups(n_layers: int, groups: int = 3) -> dict[str, list[int]]:
    """Split layers into depth groups (thirds by default): ``early``, ``middle``, ``late``.

    Args:
        n_layers: Number of decoder layers.
        groups: 3 gives early/middle/late; other values give ``g0``, ``g1``, ...

    Returns:
        ``{name: layer indices}`` (empty groups dropped).

    Example:
        >>> layer_groups(6)
        {'early': [0, 1], 'middle': [2, 3], 'late': [4, 5]}
    """
    names = ["early", "middle", "late"] if groups == 3 else [f"g{i}" for i in range(groups)]
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        idx = list(range((i * n_layers) // groups, ((i + 1) * n_layers) // groups))
        if idx:
            out[name] = idx
    return out


def bootstrap_ci(
    x: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the column means of ``x`` (rows are the resampled units).

    Args:
        x: ``[N, K]`` per-unit values.
        n_boot: Bootstrap resamples.
        seed: RNG seed.
        level: Coverage.

    Returns:
        ``(low [K], high [K])``; a single row gives a zero-width interval.

    Example:
        >>> lo, hi = bootstrap_ci(np.array([[0.0], [1.0], [0.5], [0.5]]))
        >>> bool(lo[0] < 0.5 < hi[0])
        True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] <= 1:
        m = x.mean(axis=0) if x.shape[0] else np.zeros(x.shape[1])
        return m.copy(), m.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))  # [B, N]
    means = x[idx].mean(axis=1)  # [B, K]
    a = (1.0 - level) / 2.0
    return np.quantile(means, a, axis=0), np.quantile(means, 1.0 - a, axis=0)


def calibrate(
    model: str | Reader,
    data: str | Path | Sequence[CalibrationPrompt],
    k: int,
    n: int = 24,
    *,
    rotations: int | None = None,
    max_prefills: int = 120,
    seed: int = 0,
    records_per_doc: int = 1,
    device: str = "auto",
    backend: str = "auto",
    n_boot: int = 2000,
    warn_relative_width: float = 0.5,
    progress: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> PositionProfile:
    """Measure a reader's positional attention profile over ``k`` document slots.

    For each of ``n`` prompts and each of its rotations, one truncated prefill reads, in every
    layer, the attention of the last prompt token (the answer position) to each document slot
    (context-renormalised, head-averaged). A prompt's value is the mean over its rotations; the
    profile is the mean over prompts, with bootstrap intervals over prompts.

    Args:
        model: Reader spec (loaded here) or a :class:`Reader`.
        data: A JSONL file (see :func:`load_calibration_data`) or prompts of ``k`` documents.
        k: Document slots.
        n: Calibration prompts.
        rotations: Rotations per prompt; ``None``: all ``k`` if ``n * k <= max_prefills``, else the
            largest ``R`` with ``n * R <= max_prefills`` (a Latin-square subset, at least 1).
        max_prefills: Cap used by ``rotations=None``.
        seed: Seed of the data choices and the bootstrap.
        records_per_doc: kv-retrieval records per document.
        device: Device for a model loaded here.
        backend: Probe kernel backend.
        n_boot: Bootstrap resamples.
        warn_relative_width: Warn (:class:`CalibrationWarning`) when the widest interval's
            half-width exceeds this share of a uniform slot's share ``1/k``, or when ``n < 5``.
        progress: Show a progress bar.
        meta: Extra provenance stored in the profile (e.g. the command line).

    Returns:
        The profile.

    Raises:
        InputError: Bad ``k``/``n``/data, or a prompt without ``k`` documents.

    Example:
        >>> prof = calibrate("gemma-3-270m", "nq-open-dev.jsonl.gz", k=10, n=24)  # doctest: +SKIP
        >>> len(prof.means)  # doctest: +SKIP
        10
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError("k", f"must be an int >= 1, got {k!r}", "pass the number of document slots, e.g. 10")
    if isinstance(data, (str, Path)):
        prompts, data_hash, kind = load_calibration_data(
            data, k=k, n=n, seed=seed, records_per_doc=records_per_doc
        )
        source_name = Path(data).name
    else:
        prompts = list(data)[:n]
        for i, pr in enumerate(prompts):
            if len(pr.docs) != k:
                raise InputError(
                    f"data[{i}].docs", f"has {len(pr.docs)} documents, not k={k}", f"give {k} documents"
                )
        if not prompts:
            raise InputError("data", "is empty", "pass at least one CalibrationPrompt")
        canon = json.dumps(
            [[q.query, list(q.docs)] for q in prompts], ensure_ascii=False, separators=(",", ":")
        )
        data_hash, kind, source_name = (
            hashlib.sha256(canon.encode("utf-8")).hexdigest(),
            "prompts",
            "<prompts>",
        )
    n_used = len(prompts)
    if n_used < n:
        logger.warning("only %d of the %d requested calibration prompts could be built", n_used, n)
    if rotations is None:
        rotations = k if n_used * k <= max_prefills else max(1, max_prefills // n_used)
    rotations = max(1, min(k, int(rotations)))
    reader = model if isinstance(model, Reader) else Reader(model, device=device, backend=backend)
    reader.load()
    n_layers = reader.num_layers
    per_prompt = np.zeros((n_used, n_layers, k), dtype=np.float64)  # [N, L, K]
    it: Iterable[int] = range(n_used)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="calibrate", unit="prompt")
    t0 = time.perf_counter()
    prefills = 0
    for p in it:
        offs = rotation_offsets(p, k, rotations)
        acc = np.zeros((n_layers, k), dtype=np.float64)
        for o in offs:
            acc += reader.slot_attention(prompts[p].query, rotate(prompts[p].docs, o))
            prefills += 1
        per_prompt[p] = acc / len(offs)
    seconds = time.perf_counter() - t0
    overall = per_prompt.mean(axis=1)  # [N, K]
    means = overall.mean(axis=0)  # [K]
    lo, hi = bootstrap_ci(overall, n_boot=n_boot, seed=seed)
    groups = layer_groups(n_layers)
    group_means = {g: tuple(per_prompt[:, idx].mean(axis=(0, 1)).tolist()) for g, idx in groups.items()}
    half = float(np.max(hi - lo)) / 2.0
    rel = half * k
    if n_used < 5 or rel > warn_relative_width:
        msg = (
            f"position profile from {n_used} prompts is unstable: the widest 95% interval is "
            f"±{half:.4f} (±{rel:.0%} of a uniform slot's share 1/{k}); calibrate with more prompts (--n)"
        )
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
        logger.warning(msg)
    info = {
        "data": source_name,
        "data_kind": kind,
        "rotations_per_prompt": rotations,
        "prefills": prefills,
        "seconds": round(seconds, 1),
        "layers": n_layers,
        "layer_groups": {g: [idx[0], idx[-1]] for g, idx in groups.items()},
        "query_position": "last prompt token (answer position)",
        "template": {
            "head": reader.template.head,
            "doc_header": reader.template.doc_header,
            "doc_sep": reader.template.doc_sep,
            "tail": reader.template.tail("{q}", focus=True),
        },
        "seed": seed,
        "interval": "95% percentile bootstrap over prompts",
        "max_relative_half_width": round(rel, 4),
        **dict(meta or {}),
    }
    return PositionProfile(
        model_id=reader.model_id,
        weights_sha256=reader.weights_sha256,
        k=k,
        means=tuple(means.tolist()),
        ci_low=tuple(lo.tolist()),
        ci_high=tuple(hi.tolist()),
        n=n_used,
        data_hash=data_hash,
        layer_groups=group_means,
        meta=info,
    )


__all__ = [
    "CalibrationPrompt",
    "CalibrationWarning",
    "bootstrap_ci",
    "calibrate",
    "layer_groups",
    "load_calibration_data",
    "rotate",
    "rotation_offsets",
]
