"""Retrieval-regime contexts, their labels, the new feature families and the fusion learners."""

from __future__ import annotations

import numpy as np
import pytest

from ctxcomp.compressors.features import FAMILIES, SentenceContext, build_features, feature_names
from ctxcomp.compressors.probe import ProbeFeatures
from ctxcomp.retrieval import HashingEmbedder
from ctxcomp.text.split import split_documents
from ctxcomp.training.contexts import (
    BM25,
    QAContext,
    all_facts_kept,
    data_kind,
    multihop_contexts,
    nq_contexts,
    same_topic_contexts,
    sentence_labels,
)
from ctxcomp.training.learners import auc_of, fit_learner
from ctxcomp.training.qa import has_answer, split_of
from ctxcomp.types import Document

POOL = [
    {
        "question": f"who founded city {i}",
        "answers": [f"Founder{i}"],
        "ctxs": [
            {
                "title": f"City {i}",
                "text": f"City {i} was founded by Founder{i} long ago. It has a river and {i} bridges.",
            }
        ],
    }
    for i in range(30)
]


@pytest.mark.parametrize("regime", ["lexical", "random", "mixed", "dense"])
def test_nq_regimes_build_answer_free_distractors(regime: str) -> None:
    ctxs = nq_contexts(POOL, regime=regime, split="all", n_docs=6, embedder=HashingEmbedder(64))
    assert len(ctxs) == 30
    for c in ctxs:
        assert len(c.docs) == 6 and len(c.gold) == 1
        gold = c.docs[c.gold[0]]
        assert gold.metadata["gold"] and has_answer(gold.text, c.answers)
        assert not any(has_answer(d.text, c.answers) for i, d in enumerate(c.docs) if i != c.gold[0])
        assert len({d.id for d in c.docs}) == 6 and c.regime == regime


def test_lexical_regime_picks_bm25_neighbours() -> None:
    pool = [
        *POOL,
        {"question": "x", "answers": ["zzz"], "ctxs": [{"title": "t", "text": "who founded city 3 qq"}]},
    ]
    c = nq_contexts(pool, regime="lexical", split="all", n_docs=2)[3]
    assert c.docs[1 - c.gold[0]].text.endswith("who founded city 3 qq")
    assert BM25(["a b", "c"]).scores("a").argmax() == 0


def test_training_ranges_and_splits() -> None:
    ctxs = nq_contexts(POOL, regime="random", split="train", n_docs=(2, 5), seed=1)
    assert {len(c.docs) for c in ctxs} <= {2, 3, 4, 5}
    assert all(split_of(c.question) == "train" for c in ctxs)


def test_multihop_support_spans_label_the_facts() -> None:
    row = {
        "id": "h1",
        "question": "Where was the founder of Acme born?",
        "answer": "Lyon",
        "context": [
            ["Acme", ["Acme is a firm.", " It was founded by Ann Roe."]],
            ["Ann Roe", ["Ann Roe is an engineer.", " She was born in Lyon."]],
            ["Other", ["Nothing here."]],
        ],
        "supporting_facts": [["Acme", 1], ["Ann Roe", 1]],
    }
    (ctx,) = multihop_contexts([row], split="all")
    cands = split_documents(list(ctx.docs))
    labels = sentence_labels(ctx, cands)
    assert [s.text for s, y in zip(cands.sentences, labels, strict=True) if y] == [
        "It was founded by Ann Roe.",
        "She was born in Lyon.",
    ]
    assert ctx.gold == (0, 1)
    kept = list(labels)
    assert all_facts_kept(ctx, cands, kept)
    kept[int(np.flatnonzero(labels)[0])] = False
    assert not all_facts_kept(ctx, cands, kept)
    assert data_kind(row) == "multihop"


def test_same_topic_rows() -> None:
    row = {
        "id": "s",
        "question": "q?",
        "answers": ["gold answer"],
        "gold": {"title": "T", "text": "gold answer here."},
        "distractors": [{"title": "T", "text": f"other {i}."} for i in range(12)],
    }
    (ctx,) = same_topic_contexts([row], split="all", n_docs=5)
    assert len(ctx.docs) == 5 and ctx.docs[ctx.gold[0]].id == "gold" and ctx.regime == "same-topic"


def _features(s: int, docs: list[int]) -> tuple[SentenceContext, ProbeFeatures]:
    rng = np.random.default_rng(0)
    texts = [f"sentence {i} about paris" if i % 3 == 0 else f"other text {i}" for i in range(s)]
    ctx = SentenceContext(
        "what about paris?",
        texts,
        docs,
        list(range(s)),
        [docs.count(d) for d in sorted(set(docs))],
        ["doc"] * len(set(docs)),
    )
    mass = rng.dirichlet(np.ones(s), size=(2, 4)).astype(np.float32)  # [L, H, S]
    hidden = {3: rng.normal(size=(s, 8)).astype(np.float32)}
    qh = {3: {"last": rng.normal(size=8).astype(np.float32), "query": rng.normal(size=8).astype(np.float32)}}
    probe = ProbeFeatures(mass, np.full(s, 5), (1, 3), 1, 5 * s, {"query": mass[::-1].copy()}, hidden, qh)
    return ctx, probe


def test_every_family_builds_the_named_columns() -> None:
    ctx, probe = _features(6, [0, 0, 0, 1, 1, 1])
    x = build_features(
        ctx, probe, families=FAMILIES, heads=[(1, 0)], embedder=HashingEmbedder(32), hidden_layers=(3,)
    )
    names = feature_names(FAMILIES, [1, 3], [(1, 0)], (3,))
    assert x.shape == (6, len(names)) and np.isfinite(x).all()
    wd = [i for i, n in enumerate(names) if n.startswith("wd_")]
    assert [names[i] for i in wd] == ["wd_att", "wd_cos", "wd_bm25", "wd_hid", "wd_qcov"]
    for i in wd:  # relative to the document's best: the best sentence of each document is 0
        for d in (0, 1):
            assert x[3 * d : 3 * d + 3, i].max() == 0.0


def test_learners_rank_a_separable_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.3 * x[:, 1]) > 1.0
    g = np.arange(300) // 15
    for kind in ("logistic", "pairwise", "mlp"):
        m = fit_learner(kind, x, y, g, c=1.0)
        assert auc_of(m.decision(x), y) > 0.9, kind
    with pytest.raises(Exception, match="unknown learner"):
        fit_learner("forest", x, y, g)


def test_context_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ctxcomp.training.contexts import read_contexts

    c = QAContext("x", "q?", ("a",), (Document("d0", "a b."),), ((0, 0, 2),), (0,), "src", "multihop")
    p = tmp_path / "c.jsonl"
    import json

    p.write_text(json.dumps(c.to_json()) + "\n")
    (back,) = read_contexts(p)
    assert back == c


def test_cli_family_choices_mirror_the_feature_families() -> None:
    from ctxcomp.cli.train import _FAMILIES as cli_families
    from ctxcomp.cli.train import _NQ_REGIMES
    from ctxcomp.compressors.features import FAMILIES
    from ctxcomp.training.contexts import NQ_REGIMES

    assert tuple(cli_families) == tuple(FAMILIES)
    assert tuple(_NQ_REGIMES) == tuple(NQ_REGIMES)
