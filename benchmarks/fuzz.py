"""Fuzz ctxcomp's input surfaces: a CtxcompError subclass or a valid result, never anything else.

Hypothesis strategies over what a hostile user can hand ctxcomp — queries and documents (CJK,
emoji/ZWJ, RTL, zalgo, code fences, lone surrogates, control characters, 2,000-character words,
wrong types), budgets and ratios (numpy scalars, NaN, bools, strings), configs, probe and
profile JSON (mutations of valid files, with and without a recomputed checksum), compress-jsonl
lines (random JSON, mutated records, raw bytes) and ``--docs`` files — each run against a tiny
random-weight proxy. A case passes when it raises a :class:`~ctxcomp.errors.CtxcompError`
subclass or returns a result that keeps the invariants (verbatim sentences at their offsets,
budget, exact token count, finite scores, metadata, valid JSON records with a named field).
Anything else is a crash.

``tests/test_fuzz.py`` runs these targets with a few examples each; this script runs many and
writes the counts (cases tried, outcomes by error class, crashes) to
``benchmarks/results/fuzz.json``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py            # a few minutes on 2 CPU cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py --examples 50 --out /tmp/fuzz.json
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ctxcomp import CompressionConfig, Compressor, Document, records  # noqa: E402
from ctxcomp.errors import CtxcompError  # noqa: E402

# ---------------------------------------------------------------------------------------------- strategies
PIECES = [
    "The lighthouse was built in 1874 by Margaret Doyle.",
    " It is 31 m tall. ",
    "東京は日本の首都です。",
    "你好！",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "🏳️\u200d🌈",
    "مرحبا بالعالم.",
    "\u202eevil\u202c",
    "Z\u0334\u0321\u0322\u031ba\u0337l\u0338g\u0336o\u0335",
    "```python\nprint('x.')\n```",
    "\n\n",
    "\r\n",
    "\t",
    "\x00",
    "\u2028",
    "\ufeff",
    "Dr. Smith vs. Mr. Jones?!",
    "...",
    "3.14",
    "a" * 2000,
    " ".join(["word"] * 300) + ".",
    "...",
]
#: Not valid Unicode: each must be rejected with a named error, never repaired or crashed on.
SURROGATES = ["\ud800", "\udfff", "\udc80abc", "caf\udce9"]
QUESTIONS = ["Who built the lighthouse?", "How tall is it?", "東京はどこ？", "what ferry?"]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with probability proportional to its weight."""
    total = sum(w for w, _ in choices)

    def pick(r: int) -> st.SearchStrategy[Any]:
        for w, strategy in choices:
            if r < w:
                return strategy
            r -= w
        raise AssertionError  # pragma: no cover

    return st.integers(0, total - 1).flatmap(pick)


#: Unicode text a hostile user might send: real sentences and scripts, invisible characters,
#: 2,000-character words, 300-word sentences (no surrogates).
clean_texts = st.lists(
    st.one_of(
        st.sampled_from(PIECES), st.text(max_size=30), st.text(st.characters(codec="utf-8"), max_size=10)
    ),
    max_size=8,
).map("".join)
#: Mostly clean text, sometimes with a lone surrogate spliced in.
texts = weighted(
    (85, clean_texts), (15, st.tuples(clean_texts, st.sampled_from(SURROGATES), clean_texts).map("".join))
)
finite_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    clean_texts,
)
json_scalars = st.one_of(
    finite_scalars,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
metadata = st.dictionaries(st.text(max_size=6), finite_scalars, max_size=3)

#: A document as the caller passes it: a string or a Document spec (built inside the target, so
#: its errors count; id ``None`` means a unique one); junk ones are drawn separately.
valid_docs = st.one_of(texts, st.tuples(st.just("Document"), st.none(), texts, metadata))
junk_docs = st.one_of(
    st.tuples(
        st.just("Document"),
        st.one_of(st.text(max_size=3), st.integers(), st.sampled_from(["a", "\ud800"])),
        st.one_of(texts, st.integers(), st.none()),
        st.one_of(metadata, st.integers(), st.none()),
    ),
    st.integers(),
    st.none(),
    st.binary(max_size=10),
)
doc_containers = weighted(
    (70, st.lists(valid_docs, max_size=6)),
    (10, st.lists(st.one_of(valid_docs, junk_docs), min_size=1, max_size=4)),
    (5, st.lists(valid_docs, max_size=3).map(tuple)),
    (15, st.one_of(st.none(), st.integers(), texts, st.dictionaries(st.text(max_size=3), texts, max_size=2))),
)
budget_values = weighted(
    (60, st.none()),
    (25, st.integers(min_value=1, max_value=300)),
    (15, st.sampled_from([np.int64(20), np.int32(7), True, "10", 2.5, 10**30, 0, -3])),
)
ratio_values = weighted(
    (50, st.none()),
    (35, st.floats(min_value=0.01, max_value=1.0)),
    (15, st.one_of(st.floats(), st.sampled_from([np.float32(0.3), np.float64("nan"), 0, 1, "0.5", False]))),
)
queries = weighted((60, st.sampled_from(QUESTIONS)), (30, texts), (10, st.sampled_from(["", "   ", 7, None])))


def _documents(container: Any) -> Any:
    """Build the Documents a container spec describes (their constructor errors count as outcomes)."""
    if not isinstance(container, (list, tuple)):
        return container
    out = []
    for i, item in enumerate(container):
        if isinstance(item, tuple) and item[:1] == ("Document",):
            out.append(Document(f"doc{i}" if item[1] is None else item[1], item[2], item[3]))
        else:
            out.append(item)
    return tuple(out) if isinstance(container, tuple) else out


def check_result(comp: Compressor, ctx: Any, docs: Any, budget: Any) -> None:
    """The invariants of a successful call."""
    by_id = {d.id: d for d in comp.split(docs).docs}
    for s in ctx.sentences:
        assert by_id[s.doc_id].text[s.start : s.end] == s.text, "sentence not at its offsets"
        assert math.isfinite(s.score), "non-finite score"
        if s.kept:
            assert s.text in ctx.text, "kept sentence missing from the text"
    assert ctx.stats.kept_tokens <= ctx.stats.budget, "budget overshoot"
    if isinstance(budget, int) and not isinstance(budget, bool):
        assert ctx.stats.budget == int(budget)
    assert comp.reader_tokens.count(ctx.text) == ctx.stats.kept_tokens, "token count not exact"
    for d in ctx.documents:
        src = by_id[d.id]
        assert {k: v for k, v in d.metadata.items() if k != "ctxcomp_score"} == src.metadata, "metadata lost"
        assert math.isfinite(d.score)


# ---------------------------------------------------------------------------------------------- targets
def compress_case(comp: Compressor, query: Any, container: Any, budget: Any, ratio: Any) -> str:
    docs = _documents(container)
    ctx = comp.compress(query, docs, budget=budget, ratio=ratio)
    check_result(comp, ctx, docs, budget)
    json.loads(json.dumps(records.result_record(ctx), allow_nan=False))
    return "ok"


def config_case(tiny: Path, fields: dict[str, Any]) -> str:
    cfg = CompressionConfig(proxy_model=str(tiny), **fields)
    comp = Compressor(cfg)
    ctx = comp.compress("Who built the lighthouse?", [PIECES[0] + PIECES[1], PIECES[2]], ratio=0.5)
    check_result(comp, ctx, [PIECES[0] + PIECES[1], PIECES[2]], None)
    return "ok"


def _mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return weighted((85, valid), (15, invalid))


config_fields = st.fixed_dictionaries(
    {},
    optional={
        "scorer": _mostly(
            st.sampled_from(["attention", "focus", "auto"]), st.sampled_from(["probe", "bogus", 3])
        ),
        "probe_layers": _mostly(
            st.one_of(st.none(), st.lists(st.integers(-4, 3), min_size=1, max_size=3).map(tuple)),
            st.one_of(
                st.just(()), st.just("x"), st.lists(st.integers(4, 9), min_size=1, max_size=2).map(tuple)
            ),
        ),
        "query_positions": _mostly(st.integers(1, 16), st.integers(-1, 300)),
        "null_query": st.booleans(),
        "device": _mostly(st.just("cpu"), st.sampled_from(["gpu", "cuda:x", ""])),
        "dtype": _mostly(st.sampled_from(["float32", "auto"]), st.just("int8")),
        "max_proxy_tokens": _mostly(st.integers(128, 4096), st.integers(0, 127)),
        "reorder": _mostly(st.sampled_from(["none", "u_shape"]), st.just("bogus")),
        "max_sentence_chars": _mostly(st.integers(20, 3000), st.integers(-5, 19)),
        "max_input_chars": _mostly(st.one_of(st.none(), st.integers(1, 10**6)), st.integers(-1, 0)),
        "unknown_field": st.integers(),
    },
)


def base_probe(tiny: Path) -> dict[str, Any]:
    """A valid probe file for the tiny Qwen (4 layers, 4 heads)."""
    from ctxcomp.compressors.features import feature_names
    from ctxcomp.compressors.trained import TrainedProbe

    families = ("attention", "doc_attention", "bm25", "position")
    layers, heads = (1, 2), ((1, 0), (2, 3))
    names = tuple(feature_names(families, layers, heads))
    n = len(names)
    return TrainedProbe(
        None, str(tiny), tiny.name, None, layers, heads, families, names,
        np.zeros(n), np.ones(n), np.linspace(-1.0, 1.0, n), 0.1, 1, False,
        meta={"doc_vectors": "embed", "embedder": "ctxcomp/hashing-bow-32"},
    ).to_dict()  # fmt: skip


def mutate(d: Any, rnd: random.Random, value: Any) -> Any:
    """One random edit somewhere in a JSON value: replace, delete, append, or change a list's length."""
    if isinstance(d, dict) and d:
        key = rnd.choice(sorted(d))
        op = rnd.random()
        out = dict(d)
        if op < 0.15:
            del out[key]
        elif op < 0.55:
            out[key] = mutate(d[key], rnd, value)
        else:
            out[key] = value
        return out
    if isinstance(d, list) and d:
        i = rnd.randrange(len(d))
        op = rnd.random()
        out_list = list(d)
        if op < 0.2:
            del out_list[i]
        elif op < 0.35:
            out_list.append(value)
        elif op < 0.7:
            out_list[i] = mutate(d[i], rnd, value)
        else:
            out_list[i] = value
        return out_list
    return value


#: Edits a retrained probe could have: other finite weights, extra metadata, other settings.
benign_probe_edits = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["coef", "mean"]), st.integers(0, 30), st.floats(-50, 50)),
        st.tuples(st.just("scale"), st.integers(0, 30), st.floats(0, 1e6)),
        st.tuples(st.just("intercept"), st.just(0), st.floats(-1e6, 1e6)),
        st.tuples(st.just("query_positions"), st.just(0), st.integers(1, 8)),
        st.tuples(st.just("focus"), st.just(0), st.booleans()),
        st.tuples(st.just("extra"), st.just(0), json_values),
    ),
    max_size=4,
)


def apply_benign(d: dict[str, Any], edits: list[tuple[str, int, Any]]) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for what, i, v in edits:
        if what in ("coef",):
            d["coef"][i % len(d["coef"])] = v
        elif what in ("mean", "scale"):
            col = d["normalisation"][what]
            col[i % len(col)] = v
        elif what == "extra":
            d["fuzz_note"] = v
        else:
            d[what] = v
    return d


def probe_case(comp: Compressor, tiny: Path, plan: tuple[Any, ...]) -> str:
    from ctxcomp.compressors.scorers import ProbeScorer
    from ctxcomp.compressors.trained import load_probe, probe_checksum

    rnd = random.Random(plan[1] if plan[0] == "mutate" else 0)
    d: Any = base_probe(tiny)
    raw = b""
    if plan[0] == "benign":
        d = apply_benign(d, plan[1])
        d["checksum"] = probe_checksum(d)
    else:
        _, _, value, edits, resum, raw = plan
        for _ in range(edits):
            d = mutate(d, rnd, value)
        if resum and isinstance(d, dict):
            d["checksum"] = probe_checksum(d)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.json"
        data = json.dumps(d, allow_nan=True, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")
        if raw:
            cut = rnd.randrange(len(data) + 1)
            data = data[:cut] + raw + data[cut:]
        path.write_bytes(data)
        probe = load_probe(path)
    probe.check_against(comp.proxy.num_layers, comp.proxy.model.config.get_text_config().num_attention_heads)
    cands = comp.split([PIECES[0] + PIECES[1], PIECES[16]])
    scores = ProbeScorer.for_probe(probe).score("Who built it?", cands, comp.prober(cands))
    assert np.all(np.isfinite(scores)), "probe gave non-finite scores"
    return "ok"


probe_plans = weighted(
    (40, st.tuples(st.just("benign"), benign_probe_edits)),
    (
        60,
        st.tuples(
            st.just("mutate"),
            st.integers(0, 2**31),
            json_values,
            st.integers(1, 3),
            st.booleans(),
            st.one_of(st.just(b""), st.just(b""), st.binary(min_size=1, max_size=4)),
        ),
    ),
)


def profile_case(seed: int, value: Any, edits: int) -> str:
    from ctxcomp.compressors.profile import PositionProfile

    rnd = random.Random(seed)
    d: Any = PositionProfile(
        "m", None, 3, (0.5, 0.2, 0.3), (0.4, 0.1, 0.2), (0.6, 0.3, 0.4), 20, "x"
    ).to_dict()
    for _ in range(edits):
        d = mutate(d, rnd, value)
    prof = PositionProfile.from_json(json.dumps(d, allow_nan=True))
    for k in (1, 2, 5, 11):
        p = prof.at(k)
        assert all(math.isfinite(x) for x in p.means), "non-finite interpolated profile"
        assert sorted(p.slot_preference()) == list(range(k))
    return "ok"


#: Records as a corpus would hold them: ids, questions, string and object documents, extra fields.
good_records = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(min_size=1, max_size=6), st.integers(-5, 10**12)),
        "query": st.one_of(st.sampled_from(QUESTIONS), texts),
        "docs": st.lists(
            st.one_of(
                texts,
                st.fixed_dictionaries({"text": texts}, optional={"metadata": metadata, "url": clean_texts}),
            ),
            max_size=5,
        ),
    },
    optional={"answers": st.lists(clean_texts, max_size=2), "note": json_values},
)
record_plans = weighted(
    (60, st.tuples(st.just("record"), good_records)),
    (30, st.tuples(st.just("mutate"), good_records, st.integers(0, 2**31), json_values, st.integers(1, 3))),
    (10, st.tuples(st.just("raw"), st.binary(max_size=60))),
)


def record_case(comp: Compressor, plan: tuple[Any, ...]) -> str:
    from ctxcomp.integrations.jsonl import Planner, Task, dump_line

    if plan[0] == "raw":
        line = plan[1]
    else:
        d: Any = plan[1]
        if plan[0] == "mutate":
            rnd = random.Random(plan[2])
            for _ in range(plan[4]):
                d = mutate(d, rnd, plan[3])
        line = json.dumps(d, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    planner = Planner(records.Fields(), 1 << 20)
    item = planner.plan(7, line)
    if item is None:
        raise RuntimeError("a line was skipped without a record")
    if isinstance(item, Task):
        ok, rec = records.compress_record(comp, item.line, item.obj, records.Fields(), None, 0.5)
    else:
        ok, rec = False, item
    text = dump_line(rec)
    text.encode("utf-8")
    back = json.loads(text)
    assert back["line"] == 7
    if not ok:
        assert back["field"] and back["reason"], "error record without a field or a reason"
        if back["error"] not in _CTXCOMP_NAMES:
            raise RuntimeError(f"compress_record recorded a non-ctxcomp error: {back}")
        return back["error"]
    for sent in back["sentences"]:
        assert sent["text"] in back["text"] and math.isfinite(sent["score"])
    assert back["stats"]["kept_tokens"] <= back["stats"]["budget"]
    return "ok"


def docs_file_case(data: bytes) -> str:
    from ctxcomp.cli.common import read_docs

    docs = list(read_docs(io.BytesIO(data), "docs.jsonl"))
    assert all(isinstance(d, Document) for d in docs)
    return "ok"


def _dumps(v: Any) -> bytes:
    return json.dumps(v, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


doc_lines = st.lists(
    weighted(
        (40, texts.map(_dumps)),
        (
            40,
            st.fixed_dictionaries(
                {"text": texts}, optional={"id": st.text(max_size=4), "metadata": metadata}
            ).map(_dumps),
        ),
        (5, json_values.map(_dumps)),
        (5, st.binary(max_size=20)),
        (
            5,
            st.sampled_from(
                [b'{"id": "a", "text": "x \\ud800"}', b'{"text": "x", "metadata": {"n": 1e999}}']
            ),
        ),
        (5, st.just(b"")),
    ),
    max_size=5,
).map(b"\n".join)


def langchain_case(lc: Any, query: Any, container: Any) -> str:
    from langchain_core.documents import Document as LCDocument

    docs = container
    if isinstance(container, list):
        docs = []
        for i, d in enumerate(container):
            if isinstance(d, tuple) and isinstance(d[2], str) and isinstance(d[3], dict):
                d = d[2]  # a Document spec with a valid text: as a LangChain document
            docs.append(LCDocument(page_content=d, metadata={"i": i}) if isinstance(d, str) else d)
    out = lc.compress_documents(docs, query)
    for d in out:
        assert math.isfinite(d.metadata["ctxcomp_score"]) and d.metadata["i"] >= 0
        src = docs[d.metadata["i"]].page_content
        for s in d.metadata["ctxcomp_sentences"]:
            assert src[s["start"] : s["end"]] in d.page_content
    return "ok"


def _ctxcomp_error_names() -> set[str]:
    import ctxcomp.errors as errors
    from ctxcomp.compressors.profile import ProfileFileError
    from ctxcomp.compressors.trained import ProbeFileError

    names = {n for n in dir(errors) if isinstance(getattr(errors, n), type)}
    return names | {ProbeFileError.__name__, ProfileFileError.__name__}


_CTXCOMP_NAMES = _ctxcomp_error_names()


# ---------------------------------------------------------------------------------------------- running
class Tally:
    """Counts outcomes per target; ``strict`` re-raises crashes (tests), else records them (benchmark)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.outcomes: dict[str, Counter[str]] = {}
        self.crashes: list[dict[str, str]] = []

    def run(self, target: str, fn: Callable[[], str]) -> None:
        counts = self.outcomes.setdefault(target, Counter())
        try:
            outcome = fn()
        except CtxcompError as err:
            outcome = type(err).__name__
        except Exception as err:
            counts["CRASH"] += 1
            self.crashes.append({"target": target, "error": type(err).__name__, "message": str(err)[:300]})
            if self.strict:
                raise
            return
        counts[outcome] += 1


def targets(comp: Compressor, tiny: Path, examples: int, tally: Tally, *, seed: int = 0) -> dict[str, Any]:
    """The hypothesis test functions, by target name, each running ``examples`` examples (the slow
    config target, which loads a model per case, an eighth of them)."""

    def cfg(n: int) -> Any:
        return settings(
            max_examples=n,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )

    @cfg(examples)
    @given(queries, doc_containers, budget_values, ratio_values)
    def t_compress(query: Any, container: Any, budget: Any, ratio: Any) -> None:
        tally.run("compress", lambda: compress_case(comp, query, container, budget, ratio))

    @cfg(max(3, examples // 8))
    @given(config_fields)
    def t_config(fields: dict[str, Any]) -> None:
        tally.run("config", lambda: config_case(tiny, fields))

    @cfg(examples)
    @given(probe_plans)
    def t_probe(plan: tuple[Any, ...]) -> None:
        tally.run("probe_file", lambda: probe_case(comp, tiny, plan))

    @cfg(examples)
    @given(st.integers(0, 2**31), json_values, st.integers(0, 3))
    def t_profile(s: int, value: Any, edits: int) -> None:
        tally.run("profile_file", lambda: profile_case(s + seed, value, edits))

    @cfg(examples)
    @given(record_plans)
    def t_record(plan: tuple[Any, ...]) -> None:
        tally.run("jsonl_record", lambda: record_case(comp, plan))

    lc = None
    try:
        from ctxcomp.integrations.langchain import CtxcompCompressor

        lc = CtxcompCompressor(config=comp.config, ratio=0.5)
    except CtxcompError:  # langchain-core not installed
        pass

    @cfg(examples)
    @given(queries, doc_containers)
    def t_langchain(query: Any, container: Any) -> None:
        if lc is not None:
            tally.run("langchain", lambda: langchain_case(lc, query, container))

    @cfg(examples)
    @given(doc_lines)
    def t_docs_file(data: bytes) -> None:
        tally.run("docs_file", lambda: docs_file_case(data))

    return {
        "compress": t_compress,
        "config": t_config,
        "probe_file": t_probe,
        "profile_file": t_profile,
        "jsonl_record": t_record,
        "docs_file": t_docs_file,
        "langchain": t_langchain,
    }


def build_tiny_proxy(path: Path) -> Path:
    """The tests' tiny random Qwen2 (tests/conftest.py ``build_tiny``)."""
    spec = importlib.util.spec_from_file_location("_ctxcomp_test_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build_tiny("qwen2", path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=3000, help="hypothesis examples per target")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    args = ap.parse_args(argv)
    import logging

    import torch

    logging.disable(logging.WARNING)  # unexpected-error warnings are counted, not printed
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_proxy(Path(tmp) / "tiny-qwen2")
        comp = Compressor(
            CompressionConfig(proxy_model=str(tiny), scorer="attention", probe_layers=(1, 2))
        ).load()
        tally = Tally(strict=False)
        for name, fn in targets(comp, tiny, args.examples, tally).items():
            t = time.perf_counter()
            fn()
            print(f"{name}: {sum(tally.outcomes.get(name, Counter()).values())} cases in "
                  f"{time.perf_counter() - t:.1f}s", file=sys.stderr)  # fmt: skip
    elapsed = time.perf_counter() - t0
    per_target = {k: dict(sorted(v.items())) for k, v in tally.outcomes.items()}
    by_class: Counter[str] = Counter()
    for v in tally.outcomes.values():
        by_class.update(v)
    result = {
        "what": "hypothesis fuzz of ctxcomp's input surfaces against a tiny random-weight proxy; a case "
        "passes with a CtxcompError subclass or a result that keeps the invariants",
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py --examples " + str(args.examples),
        "examples_per_target": args.examples,
        "cases": sum(sum(v.values()) for v in tally.outcomes.values()),
        "crashes": by_class.pop("CRASH", 0),
        "ok": by_class.pop("ok", 0),
        "errors_by_class": dict(sorted(by_class.items())),
        "per_target": per_target,
        "crash_samples": tally.crashes[:20],
        "seconds": round(elapsed, 1),
        "machine": f"{platform.machine()}, {platform.python_version()}, torch threads 1",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(
        json.dumps({k: result[k] for k in ("cases", "crashes", "ok", "errors_by_class", "seconds")}, indent=1)
    )
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
