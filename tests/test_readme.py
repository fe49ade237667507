"""The README's examples run as pasted with the real default proxy, and each keeps its answer.

The Python blocks of the README's quick start are executed as they are written; the shell commands
the test runs are asserted to appear verbatim in the README, so the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.slow


def python_blocks(section: str) -> list[str]:
    """The ```python blocks between the heading ``section`` and the next heading of its level."""
    start = README.index(section)
    level = section.split(" ")[0]
    rest = README[start + len(section) :]
    end = re.search(rf"^{level} ", rest, flags=re.M)
    body = rest[: end.start()] if end else rest
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def cli(command: str, tmp_path: Path, *, shown: str | None = None, cwd: Path = ROOT) -> str:
    """Run a README shell line (``shown``, asserted to be in the README) with the venv on PATH."""
    assert (shown or command) in README, f"the README no longer shows: {shown or command}"
    env = {**_env(), "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_python_quickstart_keeps_the_answer() -> None:
    blocks = python_blocks("### Python")
    assert len(blocks) == 2, "the quick start has a compress() block and a Compressor/async block"
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in blocks:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(block, "README.md", "exec"), namespace)
        out = buf.getvalue()
        assert "Margaret Doyle" in out, out


def test_cli_compress_keeps_the_answer(tmp_path: Path) -> None:
    out = cli(
        'ctxcomp compress --query "Who built the lighthouse?" --docs examples/sample_docs.jsonl --budget 40',
        tmp_path,
    )
    assert "Margaret Doyle" in out, out


#: Records whose answer the shipped probe is known to lose (a scorer miss, reported in
#: docs/probes.md): "On Sundays it opens at 08:30" ranks below "opens at 07:00 from Monday to
#: Saturday" and a same-document sentence about Saturday. Strict: the test fails once it is fixed.
KNOWN_MISSES = {"bakery-2"}
CORPUS = [json.loads(line) for line in (ROOT / "examples" / "sample_corpus.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("corpus")
    out_path = tmp / "out.jsonl"
    cli(f"examples/compress_corpus.sh {out_path}", tmp, shown="examples/compress_corpus.sh")
    return {r["id"]: r for r in map(json.loads, out_path.read_text().splitlines())}


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(r, id=r["id"], marks=pytest.mark.xfail(strict=True, reason="known scorer miss"))
        if r["id"] in KNOWN_MISSES
        else pytest.param(r, id=r["id"])
        for r in CORPUS
    ],
)
def test_compress_corpus_example_keeps_the_answer(record: dict, corpus_output: dict[str, dict]) -> None:
    assert corpus_output.keys() == {r["id"] for r in CORPUS}
    text = corpus_output[record["id"]]["text"]
    assert any(a in text for a in record["answers"]), (record["answers"], text)


def test_retrieval_quickstart_keeps_the_answer(tmp_path: Path) -> None:
    build = "ctxcomp index build examples/wiki_passages.jsonl wiki-index"
    cli(f"{build} && mv wiki-index {tmp_path}/", tmp_path, shown=build)
    line = next(ln for ln in README.splitlines() if ln.startswith("ctxcomp query wiki-index"))
    query, _, comment = line.partition("#")
    answer = comment.removeprefix(" keeps:").strip()
    assert comment.startswith(" keeps:") and answer, "the README's query line ends with '# keeps: <answer>'"
    out = cli(query.strip(), tmp_path, shown=query.strip(), cwd=tmp_path)
    assert answer in out, out


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "TOKENIZERS_PARALLELISM": "false",
    }
