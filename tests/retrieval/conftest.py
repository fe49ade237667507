"""Fixtures for the retrieval tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_helpers import make_docs, write_jsonl

from ctxcomp.retrieval import HashingEmbedder
from ctxcomp.types import Document


@pytest.fixture
def emb() -> HashingEmbedder:
    return HashingEmbedder(dim=64)


@pytest.fixture
def docs() -> list[Document]:
    return make_docs()


@pytest.fixture
def corpus_file(tmp_path: Path, docs: list[Document]) -> Path:
    return write_jsonl(
        tmp_path / "corpus.jsonl", [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in docs]
    )
