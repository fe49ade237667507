"""Issue 16 regressions: every bad input of the campaign gets a named error (or a correct result).

Each test names the campaign's finding it pins. Cached-weights cases are in
``tests/models/test_cache.py``; randomized inputs in ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import errno
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ctxcomp import CompressionConfig, Compressor, Document
from ctxcomp.cli import main
from ctxcomp.compressors.features import feature_names
from ctxcomp.compressors.profile import PositionProfile, ProfileFileError
from ctxcomp.compressors.trained import ProbeFileError, TrainedProbe, load_probe, probe_checksum
from ctxcomp.config import DEFAULT_MAX_INPUT_CHARS
from ctxcomp.errors import ConfigError, CtxcompError, InputError, UnknownModelError
from ctxcomp.integrations.jsonl import DEFAULT_MAX_LINE_BYTES

DOCS = [
    Document("a", "The lighthouse was built in 1874 by Margaret Doyle. It is 31 metres tall.", {"k": 1}),
    Document("b", "A ferry leaves every hour. Tickets cost 6 euros."),
]


@pytest.fixture(scope="module")
def comp(tiny_qwen: Path) -> Compressor:
    return Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention", probe_layers=(1, 2)))


def proxy_args(tiny: Path) -> list[str]:
    return ["--proxy", str(tiny), "--scorer", "attention"]


# ---------------------------------------------------------------------------------------------- probe files
def probe_dict(tiny: Path, **changes: Any) -> dict[str, Any]:
    """A valid probe file for the tiny Qwen (4 layers, 4 heads), with ``changes`` applied."""
    families = ("attention", "bm25", "position")
    layers, heads = (1, 2), ((1, 0), (2, 3))
    names = tuple(feature_names(families, layers, heads))
    n = len(names)
    probe = TrainedProbe(
        None, str(tiny), tiny.name, None, layers, heads, families, names,
        np.zeros(n), np.ones(n), np.linspace(-1, 1, n), 0.1, 1, False, meta={"doc_vectors": "embed"},
    )  # fmt: skip
    d = probe.to_dict()
    d.update(changes)
    if changes:
        d["checksum"] = probe_checksum(d)  # a consistent file: only the schema can object
    return d


def write_probe(path: Path, d: Any) -> Path:
    path.write_text(json.dumps(d))
    return path


def probe_compressor(tiny: Path, path: Path) -> Compressor:
    return Compressor(CompressionConfig(proxy_model=str(tiny), scorer="probe", probe_path=str(path)))


def test_valid_probe_file_scores(tiny_qwen: Path, tmp_path: Path) -> None:
    path = write_probe(tmp_path / "p.json", probe_dict(tiny_qwen))
    assert load_probe(path).feature_names[0] == "att_L1H0"
    ctx = probe_compressor(tiny_qwen, path).compress("Who built it?", DOCS, ratio=0.5)
    assert ctx.stats.scorer == "probe" and all(math.isfinite(s.score) for s in ctx.sentences)


@pytest.mark.parametrize(
    ("case", "json_path", "words"),
    [
        ("a list", "$", "must be a JSON object"),
        ("missing feature", "$.feature_names", "missing ['att_L2H3']"),
        ("head layer 99", "$.heads[1][0]", "not one of the probe layers"),
        ("unknown family", "$.families[1]", "unknown feature family"),
        ("NaN intercept", "$.intercept", "finite"),
        ("string coef", "$.coef[0]", "number"),
        ("negative scale", "$.normalisation.scale[0]", "greater than or equal to 0"),
        ("tiny scale", "$.normalisation.scale[0]", "too small to divide by"),
        ("huge coef", "$.coef[0]", "less than or equal to 1000000"),
        ("coef length", "$.coef", "values for"),
        ("bad doc_vectors", "$.doc_vectors", "not one of"),
        ("unknown embedder", "$.embedder", "not a known embedder"),
        ("swapped embedder", "$.checksum", "edited or damaged"),
        ("not a probe", "$.format", "not a ctxcomp probe"),
    ],
)
def test_bad_probe_file_named_at_load(
    case: str, json_path: str, words: str, tiny_qwen: Path, tmp_path: Path
) -> None:
    """Issue 16: bad probe files raised raw AttributeError/ValueError/IndexError/... at compress time,
    and a NaN intercept made every score NaN. Now a ProbeFileError at load, naming the JSON path."""
    good = probe_dict(tiny_qwen)
    d: Any
    if case == "a list":
        d = [good]
    elif case == "missing feature":
        names = [n for n in good["feature_names"] if n != "att_L2H3"]
        d = probe_dict(tiny_qwen, feature_names=names, coef=good["coef"][1:])
    elif case == "head layer 99":
        d = probe_dict(tiny_qwen, heads=[[1, 0], [99, 3]])
    elif case == "unknown family":
        d = probe_dict(tiny_qwen, families=["attention", "telepathy", "position"])
    elif case == "NaN intercept":
        d = probe_dict(tiny_qwen, intercept=float("nan"))
    elif case == "string coef":
        d = probe_dict(tiny_qwen, coef=["1", *good["coef"][1:]])
    elif case == "negative scale":
        n = len(good["coef"])
        d = probe_dict(tiny_qwen, normalisation={"mean": good["normalisation"]["mean"], "scale": [-1.0] * n})
    elif case == "tiny scale":
        n = len(good["coef"])
        d = probe_dict(
            tiny_qwen, normalisation={"mean": good["normalisation"]["mean"], "scale": [1e-300] * n}
        )
    elif case == "huge coef":
        d = probe_dict(tiny_qwen, coef=[1e300, *good["coef"][1:]])
    elif case == "coef length":
        d = probe_dict(tiny_qwen, coef=[*good["coef"], 1.0])
    elif case == "bad doc_vectors":
        d = probe_dict(tiny_qwen, doc_vectors="sum")
    elif case == "unknown embedder":
        d = probe_dict(tiny_qwen, embedder="no such thing")
    elif case == "swapped embedder":
        d = {**good, "embedder": "ctxcomp/hashing-bow-384"}  # edited without recomputing the checksum
    else:
        d = {**good, "format": "ctxcomp-probe/9"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d, allow_nan=True))
    with pytest.raises(ProbeFileError) as err:
        probe_compressor(tiny_qwen, path).load()
    assert err.value.json_path == json_path, str(err.value)
    assert words in str(err.value) and "Fix:" in str(err.value)
    assert isinstance(err.value, ConfigError) and str(path) in err.value.field


@pytest.mark.parametrize(
    ("heads", "layers", "json_path"), [([[1, 77]], [1], "$.heads[0][1]"), ([], [9], "$.layers[0]")]
)
def test_probe_out_of_the_proxys_range(
    heads: list, layers: list, json_path: str, tiny_qwen: Path, tmp_path: Path
) -> None:
    """Issue 16: head index 77 gave an IndexError, layer 99 a RuntimeError blaming AttentionInterface."""
    families = ["attention"] if heads else ["doc_attention"]
    names = feature_names(families, layers, [tuple(h) for h in heads])
    n = len(names)
    d = probe_dict(
        tiny_qwen, layers=layers, heads=heads, families=families, feature_names=names,
        normalisation={"mean": [0.0] * n, "scale": [1.0] * n}, coef=[1.0] * n,
    )  # fmt: skip
    path = write_probe(tmp_path / "p.json", d)
    load_probe(path)  # consistent on its own: only the proxy's shape rules it out
    with pytest.raises(ProbeFileError) as err:
        probe_compressor(tiny_qwen, path).load()
    assert err.value.json_path == json_path and "out of range" in str(err.value)


def test_probe_file_not_utf8_or_not_json(tiny_qwen: Path, tmp_path: Path) -> None:
    """Issue 16: invalid UTF-8 gave a raw UnicodeDecodeError."""
    path = tmp_path / "p.json"
    path.write_bytes(b'{"format": "ctxcomp-probe/1", "x": "\xff"}')
    with pytest.raises(ProbeFileError, match="not valid UTF-8"):
        load_probe(path)
    path.write_text("[" * 100_000)
    with pytest.raises(ProbeFileError, match="not JSON"):
        load_probe(path)


def test_probe_cli_error_exit_2(tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "d.jsonl"
    docs.write_text('"Ann wrote it. Bob read it."\n')
    path = write_probe(tmp_path / "p.json", probe_dict(tiny_qwen, intercept="NaN"))
    rc = main(
        ["compress", "--query", "Who?", "--docs", str(docs), "--proxy", str(tiny_qwen), "--probe", str(path)]
    )
    assert rc == 2
    assert f"ctxcomp: error: probe_path ({path}) $.intercept:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- profiles
def profile_dict(**changes: Any) -> dict[str, Any]:
    d = PositionProfile("m", None, 3, (0.5, 0.2, 0.3), (0.4, 0.1, 0.2), (0.6, 0.3, 0.4), 20, "x").to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    ("changes", "json_path"),
    [
        ({"means": [0.5, float("nan"), 0.3]}, "$.means[1]"),
        ({"means": [0.5, -0.2, 0.3]}, "$.means[1]"),
        ({"ci_low": [0.1, 0.1]}, "$.ci_low"),
        ({"k": "3"}, "$.k"),
        ({"layer_groups": {"early": [1.0]}}, "$.layer_groups['early']"),
        ({"model_id": ""}, "$.model_id"),
    ],
)
def test_bad_profile_named(changes: dict[str, Any], json_path: str, tmp_path: Path) -> None:
    path = tmp_path / "prof.json"
    path.write_text(json.dumps(profile_dict(**changes), allow_nan=True))
    with pytest.raises(ProfileFileError) as err:
        PositionProfile.load(path)
    assert err.value.json_path == json_path, str(err.value)
    assert isinstance(err.value, InputError) and isinstance(err.value, ConfigError)


def test_profile_not_utf8(tmp_path: Path) -> None:
    """Issue 16: the profile loader raised a raw UnicodeDecodeError on invalid UTF-8."""
    path = tmp_path / "prof.json"
    path.write_bytes(json.dumps(profile_dict()).encode().replace(b'"m"', b'"\xff"'))
    with pytest.raises(ProfileFileError, match="not valid UTF-8"):
        PositionProfile.load(path)
    with pytest.raises(ProfileFileError, match="must be a JSON object"):
        PositionProfile.from_json("[1]")


# ---------------------------------------------------------------------------------------------- text
@pytest.mark.parametrize(
    ("query", "docs", "field"),
    [
        ("q?", ["ok", "bad \ud800 text"], "docs[1]"),
        ("q \udcff?", ["ok"], "query"),
        ("q?", [Document("a", "ok")], None),
    ],
)
def test_lone_surrogates_rejected(comp: Compressor, query: str, docs: list[Any], field: str | None) -> None:
    """Issue 16: a lone surrogate gave a tokenizer TypeError; now an InputError naming the field."""
    if field is None:
        with pytest.raises(InputError) as err:
            Document("x", "a\ud800")
        assert err.value.field == "Document['x'].text" and "lone surrogate U+D800 at character 1" in str(
            err.value
        )
        return
    with pytest.raises(InputError) as err:
        comp.compress(query, docs, ratio=0.5)
    assert err.value.field == field and "lone surrogate" in str(err.value)


def test_docs_file_invalid_utf8_or_surrogate(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16: invalid UTF-8 in --docs gave a traceback (exit 1); a surrogate escape exit 1."""
    docs = tmp_path / "d.jsonl"
    docs.write_bytes(b'"fine."\n"caf\xe9."\n')
    assert main(["compress", "--query", "q?", "--docs", str(docs), *proxy_args(tiny_qwen)]) == 2
    assert f"{docs}:2: is not valid UTF-8" in capsys.readouterr().err
    docs.write_text('{"id": "a", "text": "x \\ud800 y"}\n')
    assert main(["compress", "--query", "q?", "--docs", str(docs), *proxy_args(tiny_qwen)]) == 2
    assert f"{docs}:1.text: holds a lone surrogate" in capsys.readouterr().err
    docs.write_text('"fine."\n')
    assert main(["compress", "--query", "q\udcff?", "--docs", str(docs), *proxy_args(tiny_qwen)]) == 2
    assert "--query: holds a lone surrogate" in capsys.readouterr().err


def jsonl_run(
    tmp_path: Path, tiny: Path, lines: list[str], *extra: str
) -> tuple[int, list[dict], list[dict]]:
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc = main(
        ["compress-jsonl", str(inp), str(out), "--ratio", "0.5", *proxy_args(tiny), "--no-progress", *extra]
    )
    read = lambda p: [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]  # noqa: E731
    return rc, read(out), read(tmp_path / "out.errors.jsonl")


def test_jsonl_error_records_always_name_the_field(tiny_qwen: Path, tmp_path: Path) -> None:
    """Issue 16: a surrogate in compress-jsonl gave {"error": "TypeError", "field": null}."""
    lines = [
        json.dumps({"id": "s", "query": "q?", "docs": ["a \ud800 b"]}),
        json.dumps({"id": "t\udc80", "query": "q?", "docs": ["fine."]}),
        json.dumps({"id": "u", "query": "q?", "docs": [{"text": "x.", "metadata": {"n": "\udfff"}}]}),
        '{"id": "v", "query": "q?", "docs": [], "score": 1e999}',
        json.dumps({"id": "ok", "query": "q?", "docs": ["Fine text here."]}),
    ]
    rc, out, errors = jsonl_run(tmp_path, tiny_qwen, lines)
    assert rc == 3 and [r["id"] for r in out] == ["ok"]
    fields = {e["line"]: e["field"] for e in errors}
    assert fields == {1: "docs[0]", 2: "id", 3: "docs[0].metadata.n", 4: "line"}
    assert all(e["error"] == "InputError" and "Fix:" in e["reason"] for e in errors)
    assert "out of range" in errors[3]["reason"]
    (tmp_path / "out.errors.jsonl").read_bytes().decode("utf-8")  # valid UTF-8 (escaped surrogates)


def test_unexpected_failure_is_a_readable_record() -> None:
    from ctxcomp.records import Fields, compress_record

    class Broken:
        def compress(self, query: str, docs: Any, *, budget: Any = None, ratio: Any = None) -> Any:
            raise TypeError("unsupported operand")

    ok, rec = compress_record(Broken(), 4, {"id": "x", "query": "q?", "docs": ["a."]}, Fields(), None, 0.5)
    assert not ok and rec["field"] == "record" and rec["error"] == "TypeError"
    assert "unexpected TypeError while compressing this record: unsupported operand" in rec["reason"]


def test_jsonl_blank_lines_are_skipped_and_counted(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16: blank lines landed in neither file though the docs said every line does."""
    ok = json.dumps({"id": 1, "query": "q?", "docs": ["Fine text."]})
    rc, out, errors = jsonl_run(tmp_path, tiny_qwen, ["", ok, "   ", "\t", "{bad", ""])
    assert rc == 3 and [r["line"] for r in out] == [2] and [e["line"] for e in errors] == [5]
    assert "4 blank lines skipped" in capsys.readouterr().err


def test_jsonl_unwritable_out_is_a_usage_error_before_the_model_loads(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: an OUT it cannot write loaded the model, then crashed with a traceback (exit 1)."""
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "query": "q?", "docs": ["x."]}) + "\n")
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    never = ["--proxy", str(tmp_path / "no-such-model"), "--no-progress"]  # would fail if it loaded
    assert main(["compress-jsonl", str(inp), str(regular / "out.jsonl"), *never]) == 2
    assert "OUT: cannot create" in capsys.readouterr().err
    assert (
        main(["compress-jsonl", str(inp), str(tmp_path / "o.jsonl"), "--errors", str(regular / "e"), *never])
        == 2
    )
    assert "--errors: cannot create" in capsys.readouterr().err
    assert main(["compress-jsonl", str(inp), str(tmp_path), *never]) == 2
    assert "is a directory" in capsys.readouterr().err

    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("ctxcomp.cli.jsonl.tempfile.mkstemp", read_only)
    assert main(["compress-jsonl", str(inp), str(tmp_path / "ro" / "out.jsonl"), *never]) == 2
    assert "Read-only file system" in capsys.readouterr().err
    assert not (tmp_path / "ro").exists() and not (tmp_path / "o.jsonl").exists()


def test_jsonl_write_failure_midway_is_named(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "query": "q?", "docs": ["Fine text."]}) + "\n")
    errs = str(tmp_path / "e.jsonl")
    rc = main(
        ["compress-jsonl", str(inp), "/dev/full", "--errors", errs, *proxy_args(tiny_qwen), "--no-progress"]
    )
    assert rc == 2
    assert "OUT: cannot write to '/dev/full'" in capsys.readouterr().err


def test_jsonl_half_written_errors_line_is_redone(tiny_qwen: Path, tmp_path: Path) -> None:
    """Interrupted run: a torn last line in the errors file is cut and its record redone exactly once."""
    lines = [json.dumps({"id": i, "query": "q?", "docs": ["Fine text."]}) for i in range(3)]
    lines.insert(1, "{broken")
    rc, out, errors = jsonl_run(tmp_path, tiny_qwen, lines)
    assert rc == 3 and len(out) == 3 and len(errors) == 1
    err_path = tmp_path / "out.errors.jsonl"
    err_path.write_text(err_path.read_text()[:10])  # killed while writing the only error record
    out_path = tmp_path / "out.jsonl"
    out_path.write_text("".join(out_path.read_text().splitlines(keepends=True)[:1]))
    rc = main(["compress-jsonl", str(tmp_path / "in.jsonl"), str(out_path), "--ratio", "0.5", "--resume",
               *proxy_args(tiny_qwen), "--no-progress"])  # fmt: skip
    assert rc == 3
    done = [json.loads(x)["line"] for x in out_path.read_text().splitlines()]
    redone = [json.loads(x)["line"] for x in err_path.read_text().splitlines()]
    assert sorted(done + redone) == [1, 2, 3, 4] and redone == [2]


# ---------------------------------------------------------------------------------------------- API types
def test_docs_not_a_list(comp: Compressor) -> None:
    """Issue 16: compress("q?", None) gave a raw TypeError."""
    for docs in (None, 5, {"a": "b"}, 3.5):
        with pytest.raises(InputError) as err:
            comp.compress("q?", docs, ratio=0.5)  # type: ignore[arg-type]
        assert err.value.field == "docs"


def test_langchain_documents_checked() -> None:
    """Issue 16: LangChain documents=5 gave a TypeError; None silently returned []."""
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document as LCDocument

    from ctxcomp.integrations.langchain import CtxcompCompressor, CtxcompReorder

    lc = CtxcompCompressor(config=CompressionConfig(scorer="attention"))
    for bad in (None, 5, "text", {"a": 1}):
        with pytest.raises(InputError, match="documents"):
            lc.compress_documents(bad, "q?")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"documents\[0\]\.page_content"):
        lc.compress_documents([LCDocument("a \ud800")], "q?")
    with pytest.raises(InputError, match="documents"):
        CtxcompReorder().transform_documents(None)  # type: ignore[arg-type]
    assert lc.compress_documents([], "q?") == []


def test_numpy_ratio_and_budget(comp: Compressor) -> None:
    """Issue 16: ratio=np.float32(0.3) was rejected as 'must be in (0, 1]'."""
    a = comp.compress("Who built it?", DOCS, ratio=np.float32(0.5))  # type: ignore[arg-type]
    b = comp.compress("Who built it?", DOCS, ratio=0.5)
    assert a.text == b.text
    assert comp.compress("Who?", DOCS, budget=np.int64(12)).stats.budget == 12  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ratio"):
        comp.compress("Who?", DOCS, ratio=np.float64("nan"))  # type: ignore[arg-type]


def test_bad_reader_tokenizer_is_named(tiny_qwen: Path) -> None:
    """Issue 16: a bad reader_tokenizer was reported as 'proxy_model: unknown model spec'."""
    c = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention", reader_tokenizer="nope"))
    with pytest.raises(UnknownModelError, match=r"^reader_tokenizer: unknown model spec 'nope'"):
        c.load()


# ---------------------------------------------------------------------------------------------- size guards
def test_huge_input_is_refused_at_once(tiny_qwen: Path) -> None:
    """Issue 16: a 5 MB document ran for over 600 s with no warning."""
    c = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention"))
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        c.compress("q?", ["word. " * 850_000], ratio=0.5)
    assert time.perf_counter() - t0 < 5 and not c.proxy.loaded  # before any model work
    assert err.value.field == "docs" and "max_input_chars" in str(err.value)
    ok = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention", max_input_chars=None))
    assert ok.config.max_input_chars is None
    assert DEFAULT_MAX_INPUT_CHARS * 4 < DEFAULT_MAX_LINE_BYTES < 2 * DEFAULT_MAX_INPUT_CHARS * 4


def test_jsonl_size_guards(tiny_qwen: Path, tmp_path: Path) -> None:
    """The default --max-line-bytes follows max_input_chars; what passes it meets the char limit."""
    big = json.dumps({"id": "big", "query": "q?", "docs": ["x. " * 2_000_000]})  # 6 MB line
    mid = json.dumps({"id": "mid", "query": "q?", "docs": ["x. " * 100_000]})  # 300k chars
    rc, out, errors = jsonl_run(tmp_path, tiny_qwen, [big, mid])
    assert rc == 3 and out == []
    assert errors[0]["field"] == "line" and "over the limit" in errors[0]["reason"]
    assert errors[1]["field"] == "docs" and "max_input_chars" in errors[1]["reason"]
    second = tmp_path / "second"
    second.mkdir()
    rc, out, errors = jsonl_run(second, tiny_qwen, [mid], "--max-input-chars", "10")
    assert rc == 3 and errors[0]["field"] == "line"  # 4 bytes a char + 256 KiB: the line limit follows


# ---------------------------------------------------------------------------------------------- JSON out
def test_json_output_is_always_valid(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: `ctxcomp compress --json` wrote a bare NaN for NaN metadata."""
    from ctxcomp.cli.common import print_json

    print_json({"a": float("nan"), "b": [np.float32("inf"), np.int64(3)], "c": "\udc80", 4: object()})
    line = capsys.readouterr().out
    parsed = json.loads(line)
    assert parsed["a"] is None and parsed["b"] == [None, 3] and parsed["c"] == "\udc80" and "4" in parsed


def test_cli_rejects_non_finite_metadata(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "d.jsonl"
    for meta in ("NaN", "1e999", "-Infinity"):
        docs.write_text('{"id": "a", "text": "Fine text.", "metadata": {"x": ' + meta + "}}\n")
        assert main(["compress", "--query", "q?", "--docs", str(docs), "--json", *proxy_args(tiny_qwen)]) == 2
        assert f"{docs}:1: is not valid JSON" in capsys.readouterr().err


def test_every_error_is_a_ctxcomp_error() -> None:
    for cls in (ProbeFileError, ProfileFileError):
        assert issubclass(cls, CtxcompError)


def test_no_pickle_no_remote_code() -> None:
    """Nothing ctxcomp loads is a pickle; no model runs remote code (checked in the source)."""
    root = Path(__file__).resolve().parents[1] / "ctxcomp"
    banned = ("import pickle", "torch.load(", "allow_pickle=True", "trust_remote_code=True", "joblib")
    found = [
        f"{p.relative_to(root)}: {b}" for p in root.rglob("*.py") for b in banned if b in p.read_text("utf-8")
    ]
    assert not found, found
