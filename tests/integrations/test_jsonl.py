"""``ctxcomp compress-jsonl``: mixed good/bad corpora, exactly-once accounting, streams, resume after kill."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ctxcomp.cli import main
from ctxcomp.errors import InputError
from ctxcomp.integrations import jsonl
from ctxcomp.integrations.jsonl import Oversize, default_errors_path, read_lines, repair_tail

GOOD = {
    "id": "q1",
    "query": "Who built the lighthouse?",
    "docs": [
        "The lighthouse was built in 1874 by Margaret Doyle. It is 31 metres tall.",
        {
            "id": "ferry",
            "text": "A ferry leaves every hour. Tickets cost 6 euros.",
            "metadata": {"src": "t", "n": 1},
        },
    ],
    "answers": ["Doyle"],
}

MIXED_LINES = [
    json.dumps(GOOD),  # 1 ok
    "{not json",  # 2 invalid JSON
    "",  # 3 blank: not a record
    json.dumps({"id": "q2", "query": "", "docs": []}),  # 4 empty query
    json.dumps({"id": "q3", "query": "ferry?", "docs": "not a list"}),  # 5 wrong type
    json.dumps({"id": "q1", "query": "dup?", "docs": ["x."]}),  # 6 duplicate id
    json.dumps({"query": "no id", "docs": ["x."]}),  # 7 missing id
    "[1, 2]",  # 8 not an object
    json.dumps({"id": 5, "query": "int ids?", "docs": [{"text": "Yes they are. Fine."}]}),  # 9 ok
    json.dumps({"id": "q6", "query": "bad doc", "docs": [{"text": 3}]}),  # 10 wrong doc type
    json.dumps({"id": "big", "query": "x" * 3000, "docs": []}),  # 11 oversize
    json.dumps({"id": "q8", "query": "short?", "docs": ["Short one. Another one here."]}),  # 12 ok
    json.dumps(
        {"id": "q9", "query": "extra doc key", "docs": [{"text": "A.", "url": "u"}]}
    ),  # 13 ok: an extra document key is folded into its metadata (ctxcomp.records rules)
]
BAD = {2: None, 4: "q2", 5: "q3", 6: "q1", 7: None, 8: None, 10: "q6", 11: None}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def proxy_args(tiny: Path) -> list[str]:
    return ["--proxy", str(tiny), "--scorer", "attention", "--no-progress", "--torch-threads", "1"]


def check_exactly_once(inp: Path, out: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    """Every non-blank input line is in OUT or ERRORS exactly once; OUT is in input order."""
    lines = [n for n, text in enumerate(inp.read_text(encoding="utf-8").splitlines(), 1) if text.strip()]
    got = sorted([r["line"] for r in out] + [r["line"] for r in errors])
    assert got == lines
    assert [r["line"] for r in out] == sorted(r["line"] for r in out)
    ids = [r["id"] for r in out] + [r["id"] for r in errors if r["id"] is not None]
    assert len(set(map(json.dumps, (r["id"] for r in out)))) == len(out)
    assert len(ids) >= len(out)


def without_timings(path: Path) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    for r in rows:
        r["stats"].pop("timings")
    return rows


def synthetic(n: int, bad_every: int = 0, n_docs: int = 3) -> list[str]:
    words = ["harbour", "lamp", "ferry", "market", "cheese", "bread"]
    words += ["tower", "river", "bridge", "museum", "keeper", "island"]
    lines = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            lines.append("{broken" if i % 2 else json.dumps({"id": f"r{i}", "query": 7, "docs": []}))
            continue
        docs = [
            {
                "id": f"d{j}",
                "text": " ".join(f"The {words[(i + j + k) % 12]} is {k + j} metres long." for k in range(3)),
                "metadata": {"rank": j, "src": f"s{i}"},
            }
            for j in range(n_docs)
        ]
        lines.append(json.dumps({"id": f"r{i}", "query": f"How long is the {words[i % 12]}?", "docs": docs}))
    return lines


def test_mixed_corpus(tmp_path: Path, tiny_qwen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = write_lines(tmp_path / "in.jsonl", MIXED_LINES)
    out_path = tmp_path / "out.jsonl"
    rc = main(
        [
            "compress-jsonl",
            str(inp),
            str(out_path),
            "--budget",
            "20",
            "--max-line-bytes",
            "2000",
            *proxy_args(tiny_qwen),
        ]
    )
    assert rc == 3
    assert capsys.readouterr().out == ""
    out, errors = read_jsonl(out_path), read_jsonl(tmp_path / "out.errors.jsonl")
    check_exactly_once(inp, out, errors)
    assert {e["line"]: e["id"] for e in errors} == BAD
    by_line = {e["line"]: e for e in errors}
    assert by_line[2]["field"] == "line" and "not valid JSON" in by_line[2]["reason"]
    assert by_line[4]["field"] == "query" and by_line[5]["field"] == "docs"
    assert "duplicate id 'q1'" in by_line[6]["reason"] and "line 1" in by_line[6]["reason"]
    assert by_line[7]["field"] == "id" and "missing" in by_line[7]["reason"]
    assert by_line[10]["field"] == "docs[0].text" and "bytes" in by_line[11]["reason"]
    assert all(e["error"] == "InputError" and "Fix:" in e["reason"] for e in errors)

    assert [r["id"] for r in out] == ["q1", 5, "q8", "q9"]
    assert out[3]["documents"][0]["metadata"]["url"] == "u"  # folded into metadata
    first = out[0]
    assert first["extra"] == {"answers": ["Doyle"]}
    assert first["stats"]["kept_tokens"] <= 20
    source = {"0": GOOD["docs"][0], "ferry": GOOD["docs"][1]["text"]}
    for s in first["sentences"]:
        assert source[s["doc_id"]][s["start"] : s["end"]] == s["text"]
        assert s["text"] in first["text"]
        assert set(s) == {"doc_id", "index", "start", "end", "score", "text"}
    for d in first["documents"]:
        if d["id"] == "ferry":
            assert (
                d["metadata"]["src"] == "t" and d["metadata"]["n"] == 1 and "ctxcomp_score" in d["metadata"]
            )


def test_clean_corpus_exits_zero(tmp_path: Path, tiny_qwen: Path) -> None:
    inp = write_lines(tmp_path / "in.jsonl", synthetic(6))
    out_path = tmp_path / "out.jsonl"
    assert main(["compress-jsonl", str(inp), str(out_path), "--ratio", "0.5", *proxy_args(tiny_qwen)]) == 0
    assert len(read_jsonl(out_path)) == 6
    assert not (tmp_path / "out.errors.jsonl").exists()  # a clean run leaves no errors file


def test_custom_fields_and_threads(tmp_path: Path, tiny_qwen: Path) -> None:
    rows = [json.loads(line) for line in synthetic(8)]
    lines = [json.dumps({"qid": r["id"], "question": r["query"], "passages": r["docs"]}) for r in rows]
    inp = write_lines(tmp_path / "in.jsonl", lines)
    common = ["--query-field", "question", "--docs-field", "passages", "--id-field", "qid", "--budget", "25"]
    assert main(["compress-jsonl", str(inp), str(tmp_path / "a.jsonl"), *common, *proxy_args(tiny_qwen)]) == 0
    assert (
        main(
            [
                "compress-jsonl",
                str(inp),
                str(tmp_path / "b.jsonl"),
                *common,
                "--num-workers",
                "3",
                "--batch-size",
                "4",
                *proxy_args(tiny_qwen),
            ]
        )
        == 0
    )
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert [r["id"] for r in a] == [r["id"] for r in rows]
    assert [r["text"] for r in a] == [r["text"] for r in b]


def test_stdin_to_stdout_stays_clean(
    tmp_path: Path, tiny_qwen: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "\n".join([MIXED_LINES[0], "{not json", MIXED_LINES[11]]) + "\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    real = jsonl.compress_records

    def noisy(*args: Any, **kwargs: Any) -> Any:
        print("library noise")  # a stray print must not reach stdout
        return real(*args, **kwargs)

    monkeypatch.setattr(jsonl, "compress_records", noisy)
    rc = main(["compress-jsonl", "-", "-", "--ratio", "0.5", *proxy_args(tiny_qwen)])
    cap = capsys.readouterr()
    assert rc == 3
    records = [json.loads(line) for line in cap.out.splitlines()]
    assert [r["id"] for r in records] == ["q1", "q8"]
    assert "library noise" in cap.err
    err_lines = [json.loads(line) for line in cap.err.splitlines() if line.startswith('{"line"')]
    assert [e["line"] for e in err_lines] == [2]


def test_compression_errors_are_recorded(
    tmp_path: Path, tiny_qwen: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctxcomp.api import Compressor

    real = Compressor.place  # a step inside compression, for batched and single calls alike

    def flaky(self: Compressor, query: str, cands: Any, *args: Any) -> Any:
        if '"s1"' in json.dumps([d.metadata for d in cands.docs]):
            raise InputError("docs", "cannot be compressed", "test")
        if '"s2"' in json.dumps([d.metadata for d in cands.docs]):
            raise RuntimeError("boom")
        return real(self, query, cands, *args)

    monkeypatch.setattr(Compressor, "place", flaky)
    inp = write_lines(tmp_path / "in.jsonl", synthetic(4))
    out_path = tmp_path / "out.jsonl"
    errors = tmp_path / "errs" / "e.jsonl"
    rc = main(["compress-jsonl", str(inp), str(out_path), "--errors", str(errors), *proxy_args(tiny_qwen)])
    assert rc == 3
    errs = read_jsonl(errors)
    assert [(e["id"], e["error"]) for e in errs] == [("r1", "InputError"), ("r2", "RuntimeError")]
    assert "boom" in errs[1]["reason"]
    assert [r["id"] for r in read_jsonl(out_path)] == ["r0", "r3"]


def test_usage_errors(tmp_path: Path, tiny_qwen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = write_lines(tmp_path / "in.jsonl", synthetic(2))
    out_path = tmp_path / "out.jsonl"
    out_path.write_text("{}\n")
    base = ["compress-jsonl", str(inp)]
    assert main([*base, str(out_path), *proxy_args(tiny_qwen)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*base, "-", "--resume", *proxy_args(tiny_qwen)]) == 2
    assert main([*base, str(tmp_path / "o.jsonl"), "--ratio", "2", *proxy_args(tiny_qwen)]) == 2
    assert "ratio" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "o.jsonl"), "--batch-size", "0", *proxy_args(tiny_qwen)]) == 2
    assert main(["compress-jsonl", str(tmp_path / "missing.jsonl"), "-", *proxy_args(tiny_qwen)]) == 2
    assert main([*base, str(inp), *proxy_args(tiny_qwen)]) == 2
    assert (
        main([*base, str(tmp_path / "o.jsonl"), "--proxy", str(tmp_path / "no-model"), "--no-progress"]) == 2
    )
    with pytest.raises(SystemExit) as exc:
        main([*base, "-", "--budget", "5", "--ratio", "0.5"])
    assert exc.value.code == 2
    out_path.write_text('{"not": "a record"}\n')
    assert main([*base, str(out_path), "--resume", *proxy_args(tiny_qwen)]) == 2
    assert "not a compress-jsonl record" in capsys.readouterr().err


def test_resume_in_process(tmp_path: Path, tiny_qwen: Path) -> None:
    inp = write_lines(tmp_path / "in.jsonl", [*synthetic(12, bad_every=4), synthetic(1)[0]])  # last: dup r0
    full = tmp_path / "full.jsonl"
    assert main(["compress-jsonl", str(inp), str(full), "--ratio", "0.4", *proxy_args(tiny_qwen)]) == 3
    # An interrupted run: the first 4 output lines, a half-written fifth, and the first error only.
    part = tmp_path / "part.jsonl"
    out_lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(out_lines[:4]) + out_lines[4][:25])
    err_lines = (tmp_path / "full.errors.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "part.errors.jsonl").write_text(err_lines[0])
    assert (
        main(["compress-jsonl", str(inp), str(part), "--ratio", "0.4", "--resume", *proxy_args(tiny_qwen)])
        == 3
    )
    assert without_timings(part) == without_timings(full)
    assert read_jsonl(tmp_path / "part.errors.jsonl") == read_jsonl(tmp_path / "full.errors.jsonl")
    # Resuming a finished run changes nothing.
    n_bytes = part.stat().st_size
    assert (
        main(["compress-jsonl", str(inp), str(part), "--ratio", "0.4", "--resume", *proxy_args(tiny_qwen)])
        == 3
    )
    assert part.stat().st_size == n_bytes
    check_exactly_once(inp, read_jsonl(part), read_jsonl(tmp_path / "part.errors.jsonl"))


N_KILL = 1000  # enough that the run is still going when it is killed


def test_resume_after_kill(tmp_path: Path, tiny_qwen: Path) -> None:
    inp = write_lines(tmp_path / "in.jsonl", synthetic(N_KILL, bad_every=20, n_docs=1))
    out_path = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "ctxcomp",
        "compress-jsonl",
        str(inp),
        str(out_path),
        "--ratio",
        "0.4",
        *proxy_args(tiny_qwen),
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out_path.exists() and out_path.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]
    before = out_path.read_bytes().count(b"\n")
    assert 10 <= before < N_KILL
    with out_path.open("ab") as fh:  # as if killed in the middle of a write
        fh.write(b'{"id": "r99", "line": 10')
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 3, resumed.stderr
    assert "incomplete last line" in resumed.stderr
    out, errors = read_jsonl(out_path), read_jsonl(tmp_path / "out.errors.jsonl")
    check_exactly_once(inp, out, errors)
    assert len(out) == N_KILL - N_KILL // 20 and len(errors) == N_KILL // 20
    unparsable = inp.read_text().count("{broken")
    assert len({r["id"] for r in out} | {e["id"] for e in errors if e["id"]}) == N_KILL - unparsable


def test_read_lines_and_repair(tmp_path: Path) -> None:
    data = b'{"a": 1}\n\n' + b"x" * 50 + b"\n" + b'{"b": 2}\r\n' + b"y" * 60
    assert list(read_lines(io.BytesIO(data), 20)) == [
        (1, b'{"a": 1}'),
        (3, Oversize(50)),
        (4, b'{"b": 2}'),
        (5, Oversize(60)),
    ]
    p = tmp_path / "o.jsonl"
    p.write_bytes(b'{"line": 1}\n{"line": 2}\n{"li')
    assert repair_tail(p) == 4 and p.read_bytes() == b'{"line": 1}\n{"line": 2}\n'
    assert repair_tail(p) == 0
    p.write_bytes(b"no newline at all")
    assert repair_tail(p) == 17 and p.read_bytes() == b""
    assert default_errors_path("a/out.jsonl") == Path("a/out.errors.jsonl")
    assert default_errors_path("out.txt") == Path("out.txt.errors.jsonl")


def test_clean_run_writes_no_errors_file_and_resume_with_nothing_left_skips_the_model(
    tmp_path: Path, tiny_qwen: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = write_lines(tmp_path / "in.jsonl", [MIXED_LINES[0], MIXED_LINES[11]])
    out = tmp_path / "out.jsonl"
    assert main(["compress-jsonl", str(inp), str(out), "--ratio", "0.5", *proxy_args(tiny_qwen)]) == 0
    assert out.is_file() and not (tmp_path / "out.errors.jsonl").exists()
    capsys.readouterr()

    from ctxcomp.api import Compressor

    def no_load(self: Compressor) -> Compressor:
        raise AssertionError("nothing is left to do: the model must not load")

    monkeypatch.setattr(Compressor, "load", no_load)
    assert (
        main(["compress-jsonl", str(inp), str(out), "--ratio", "0.5", "--resume", *proxy_args(tiny_qwen)])
        == 0
    )
    assert "nothing left to do" in capsys.readouterr().err
