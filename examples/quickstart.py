"""Quick start: compress retrieved passages for a question with the ctxcomp Python API.

Runs offline with the default proxy preset. Use another proxy with ``--proxy SPEC`` or
``CTXCOMP_PROXY=SPEC`` (a preset name, a local model directory, a .gguf file or a hub id).

    python examples/quickstart.py
    python examples/quickstart.py --proxy gemma-3-270m --budget 40
"""

from __future__ import annotations

import argparse
import os

import ctxcomp
from ctxcomp import CompressionConfig, Compressor, Document

DOCS = [
    Document(
        "lighthouse",
        "The Harbour Point lighthouse was finished in 1874. It was designed by the engineer Margaret Doyle, "
        "who also planned the breakwater. The tower is 31 metres tall and painted white with one red band.",
        {"source": "town-guide", "page": 3},
    ),
    Document(
        "ferry",
        "Ferries to the island leave the old pier every two hours. A return ticket costs 6 euros. "
        "The last boat back departs at 19:30 in summer.",
        {"source": "timetable"},
    ),
    Document(
        "history",
        "Before the lighthouse existed, ships were guided by a bonfire on the headland. "
        "Doyle's design used a rotating lens imported from Paris. The keeper's cottage is now a museum.",
        {"source": "museum-leaflet"},
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default=os.environ.get("CTXCOMP_PROXY", ctxcomp.DEFAULT_PROXY))
    parser.add_argument("--budget", type=int, default=60, help="token budget of the compressed context")
    args = parser.parse_args()

    question = "Who designed the Harbour Point lighthouse, and when was it finished?"
    compressor = Compressor(CompressionConfig(proxy_model=args.proxy))
    ctx = compressor.compress(question, DOCS, budget=args.budget)

    print(f"Question: {question}\n")
    print("Compressed context:")
    print(ctx.text)
    s = ctx.stats
    print(f"\n{s.kept_tokens}/{s.original_tokens} tokens kept (budget {s.budget}, {s.ratio:.1f}x smaller)")
    print("\nKept sentences (doc id, sentence index, char offsets, score):")
    for sent in ctx.kept_sentences:
        print(f"  {sent.doc_id:<10} #{sent.index}  [{sent.start}:{sent.end}]  {sent.score:.3f}  {sent.text}")
    print("\nDocument metadata survives, with the document's score added:")
    for doc in ctx.documents:
        print(f"  {doc.id}: {doc.metadata}")


if __name__ == "__main__":
    main()
