"""Positional profiles, calibration and the reorderers, on tiny random-weight models."""

from __future__ import annotations

import gzip
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from ctxcomp import CompressionConfig, Compressor
from ctxcomp.cli import main
from ctxcomp.compressors.profile import PROFILES_DIR, PositionProfile
from ctxcomp.compressors.reader import Reader, calibrated_scores, dummy_documents, slot_prompt
from ctxcomp.compressors.reorder import attention_sort, attnrank, found_in_middle, reorder, u_shape
from ctxcomp.errors import ConfigError, CtxcompError, InputError, ProbeMismatchError
from ctxcomp.registry import REORDERERS
from ctxcomp.training.calibrate import (
    CalibrationPrompt,
    CalibrationWarning,
    calibrate,
    layer_groups,
    load_calibration_data,
    rotate,
    rotation_offsets,
)
from ctxcomp.training.plots import PlotDependencyError, plot_profile

DOCS = [
    "The Eiffel Tower is in Paris. Paris is the capital of France.",
    "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901.",
    "Question: who wrote Hamlet? Answer: William Shakespeare wrote it.",
    "Numbers 3.14, 42 and 2024 appear here.",
]


def profile_of(means: list[float], model_id: str = "m", sha: str | None = None) -> PositionProfile:
    m = np.asarray(means, dtype=float) / np.sum(means)
    return PositionProfile(
        model_id,
        sha,
        len(m),
        tuple(m),
        tuple(m * 0.9),
        tuple(m * 1.1),
        30,
        "hash",
        layer_groups={"early": tuple(m), "late": tuple(m[::-1] / m.sum())},
    )


@pytest.fixture(scope="module")
def reader(tiny_qwen: Path) -> Reader:
    return Reader(str(tiny_qwen), device="cpu")


@pytest.fixture(scope="module")
def kv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small kv-retrieval file in the shared data's format."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("kv") / "kv-retrieval-mini.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for _ in range(8):
            recs = [[f"k{rng.integers(1e6):06d}", f"v{rng.integers(1e6):06d}"] for _ in range(12)]
            key, value = recs[int(rng.integers(12))]
            fh.write(json.dumps({"ordered_kv_records": recs, "key": key, "value": value}) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- profile
def test_profile_json_round_trip(tmp_path: Path) -> None:
    p = profile_of([1, 2, 3, 4], sha="abc")
    d = json.loads(p.to_json())
    assert d["means"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert d["format"] == "ctxcomp-position-profile" and d["ctxcomp_version"]
    assert PositionProfile.from_json(p.to_json()) == p
    path = p.save(tmp_path / "sub" / "p.json")
    assert PositionProfile.load(path) == p


def test_profile_validation() -> None:
    with pytest.raises(InputError, match="means"):
        PositionProfile("m", None, 3, (0.5, 0.5), (0, 0), (1, 1), 1, "x")
    with pytest.raises(InputError, match="k"):
        PositionProfile("m", None, 0, (), (), (), 1, "x")
    with pytest.raises(InputError, match="not valid JSON"):
        PositionProfile.from_json("{not json")
    with pytest.raises(InputError, match="lacks fields"):
        PositionProfile.from_json('{"model_id": "m"}')
    with pytest.raises(InputError, match="position_profile"):
        PositionProfile.load("/nonexistent/profile.json")


def test_interpolation() -> None:
    p = profile_of([4, 1, 1, 1, 3])
    assert p.at(5) is p
    for k in (1, 2, 3, 7, 10, 20):
        q = p.at(k)
        assert q.k == k and len(q.means) == k and len(q.ci_low) == k
        assert sum(q.means) == pytest.approx(1.0)
        assert all(lo <= m <= hi for lo, m, hi in zip(q.ci_low, q.means, q.ci_high, strict=True))
        assert all(sum(v) == pytest.approx(1.0) for v in q.layer_groups.values())
        assert q.meta["interpolated_from_k"] == 5
    assert p.at(1).means == (1.0,)
    assert p.at(9).slot_preference()[0] == 0  # the peak stays at the front
    two = profile_of([1, 3])
    assert two.at(3).means == pytest.approx((1 / 6, 2 / 6, 3 / 6))
    # Interpolating to the same relative grid and back is the identity.
    assert p.at(9).at(5).means == pytest.approx(p.means, rel=1e-6)
    with pytest.raises(InputError):
        p.at(0)


# ---------------------------------------------------------------------------------------------- reorderers
@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("peak", [0, "mid", "last"])
def test_attnrank_sends_top_document_to_peak(k: int, peak: int | str) -> None:
    slot = {0: 0, "mid": k // 2, "last": k - 1}[peak]
    means = [1.0] * k
    means[slot] = 5.0
    prof = profile_of(means)
    scores = list(np.linspace(0.1, 0.9, k)[::-1])  # doc 0 best
    order = attnrank(scores, prof)
    assert order[slot] == 0
    assert sorted(order) == list(range(k))


def test_attnrank_follows_the_whole_preference() -> None:
    prof = profile_of([0.3, 0.1, 0.2, 0.4])  # preference: slot 3, 0, 2, 1
    order = reorder("attnrank", [0.9, 0.7, 0.8, 0.1], profile=prof)  # ranks: doc 0, 2, 1, 3
    assert order == [2, 3, 1, 0]
    # A profile of another K is interpolated to the number of kept documents.
    assert reorder("attnrank", [0.2, 0.9], profile=profile_of([1, 1, 1, 1, 9])) == [0, 1]


def test_u_shape_deterministic() -> None:
    assert u_shape([0.9, 0.8, 0.7, 0.6, 0.5]) == [0, 2, 4, 3, 1]
    assert u_shape([0.5, 0.5, 0.5]) == [0, 2, 1]  # ties keep input order
    scores = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2]
    assert all(u_shape(scores) == u_shape(scores) for _ in range(3))
    assert reorder("u_shape", scores) == u_shape(scores)
    out = u_shape(scores)
    assert out[0] == 1 and out[-1] == 4  # best first, second best last


def test_none_and_unknown() -> None:
    assert reorder("none", [0.1, 0.9, 0.5]) == [0, 1, 2]
    with pytest.raises(ConfigError, match="unknown reorder strategy"):
        reorder("sideways", [0.1])
    assert {"none", "u_shape", "attnrank", "attention_sort", "found_in_middle"} <= set(REORDERERS.names())


def test_attention_reorderers_need_what_they_use(reader: Reader) -> None:
    with pytest.raises(ConfigError, match="needs a reader"):
        reorder("attention_sort", [0.1, 0.2], query="q?", docs=["a", "b"])
    with pytest.raises(ConfigError, match="query and the document texts"):
        reorder("found_in_middle", [0.1, 0.2], reader=reader)
    with pytest.raises(ConfigError, match="needs a position profile"):
        reorder("attnrank", [0.1, 0.2])


def test_attention_sort_and_found_in_middle_on_tiny_qwen(reader: Reader) -> None:
    q = "Who won the first Nobel Prize in Physics?"
    for fn in (attention_sort, found_in_middle):
        order = fn(q, DOCS, reader)
        assert sorted(order) == list(range(len(DOCS)))
        assert fn(q, DOCS, reader) == order  # deterministic
    # Attention sorting puts the most attended document (in the final round's input) last.
    first = reader.doc_attention(q, DOCS)
    one_round = attention_sort(q, DOCS, reader, rounds=1)
    assert one_round[-1] == int(np.argmax(first))
    cal = calibrated_scores(reader, q, DOCS)
    assert cal.shape == (len(DOCS),) and np.isfinite(cal).all()
    assert found_in_middle(q, DOCS, reader)[-1] == int(np.argmax(cal))
    with pytest.raises(ConfigError, match="rounds"):
        attention_sort(q, DOCS, reader, rounds=0)


def test_slot_attention_shape_and_mass(reader: Reader) -> None:
    att = reader.slot_attention("Where is Paris?", DOCS)
    assert att.shape == (reader.num_layers, len(DOCS))
    np.testing.assert_allclose(att.sum(axis=1), 1.0, rtol=1e-4)
    assert reader.doc_attention("q?", []).shape == (0,)


def test_slot_prompt_maps_headers_and_texts() -> None:
    prompt, cs = slot_prompt("Who?", ["Ann.", "", "Bob."])
    for i, text in enumerate(["Ann.", "", "Bob."]):
        covered = "".join(prompt[c] for c in np.flatnonzero(cs == i))
        assert covered == f"Document [{i + 1}]: {text}"
    assert prompt.endswith("Question: Who?\nAnswer:")


@pytest.mark.parametrize("name", ["none", "u_shape", "attnrank", "attention_sort", "found_in_middle"])
def test_one_and_zero_documents(name: str, reader: Reader) -> None:
    prof = profile_of([1, 2, 3])
    assert reorder(name, [0.5], query="q?", docs=["Only one."], reader=reader, profile=prof, force=True) == [
        0
    ]
    assert reorder(name, [], query="q?", docs=[], reader=reader, profile=prof, force=True) == []


@pytest.mark.parametrize("name", ["attention_sort", "found_in_middle", "attnrank"])
def test_empty_documents(name: str, reader: Reader) -> None:
    docs = ["Paris is in France.", "", "Bob slept.", ""]
    order = reorder(
        name,
        [0.1, 0.0, 0.5, 0.0],
        query="Where is Paris?",
        docs=docs,
        reader=reader,
        profile=profile_of([2, 1, 1, 3]),
        force=True,
    )
    assert sorted(order) == [0, 1, 2, 3]
    dummies = dummy_documents(reader.tokenizer, docs)
    assert dummies[1] == "" and dummies[3] == "" and dummies[0]


# ------------------------------------------------------------------------------------- profiles & readers
def test_attnrank_without_profile_names_calibrate(reader: Reader) -> None:
    with pytest.raises(CtxcompError, match="ctxcomp calibrate"):
        reorder("attnrank", [0.1, 0.9], query="q?", docs=["a", "b"], reader=reader)


def test_profile_mismatch_and_force(reader: Reader, caplog: pytest.LogCaptureFixture) -> None:
    other = profile_of([1, 2, 3], model_id="some-other-model")
    with pytest.raises(ProbeMismatchError, match="force"):
        reorder("attnrank", [0.1, 0.9, 0.5], reader=reader, profile=other)
    with caplog.at_level(logging.WARNING):
        order = reorder("attnrank", [0.1, 0.9, 0.5], reader=reader, profile=other, force=True)
    assert order[2] == 1
    assert "force=True" in caplog.text
    own = profile_of([1, 2, 3], model_id=reader.model_id)
    assert reorder("attnrank", [0.1, 0.9, 0.5], reader=reader, profile=own)[2] == 1
    # Weights hashes win over ids when both are known.
    with pytest.raises(ProbeMismatchError):
        profile_of([1, 1], model_id="x", sha="aaa").check_model("x", "bbb")
    profile_of([1, 1], model_id="x", sha="aaa").check_model("renamed", "aaa")


def test_compressor_reorder_stage(tiny_qwen: Path, tmp_path: Path) -> None:
    docs = [
        "Paris is in France. It is big.",
        "Bob slept. He snored loudly.",
        "Tokyo is large. It is in Japan.",
    ]
    base = {"proxy_model": str(tiny_qwen), "scorer": "attention", "probe_layers": (1, 2)}
    plain = Compressor(CompressionConfig(**base)).compress("Where is Paris?", docs, ratio=1.0)
    scores = {d.id: d.score for d in plain.documents}
    ranked = sorted(scores, key=lambda i: (-scores[i], int(i)))
    prof = profile_of([1, 1, 5], model_id=Path(tiny_qwen).name)
    path = prof.save(tmp_path / "p.json")
    ctx = Compressor(CompressionConfig(**base, reorder="attnrank", position_profile=str(path))).compress(
        "Where is Paris?", docs, ratio=1.0
    )
    assert ctx.documents[-1].id == ranked[0]  # the best document sits at the profile's peak
    for d in ctx.documents:  # sentences inside a document keep their order
        assert [s.index for s in d.sentences] == sorted(s.index for s in d.sentences)
    assert ctx.text.split("\n\n")[-1] == docs[int(ranked[0])]

    bad = profile_of([1, 1, 5], model_id="another-reader").save(tmp_path / "other.json")
    with pytest.raises(ProbeMismatchError):
        Compressor(CompressionConfig(**base, reorder="attnrank", position_profile=str(bad))).compress(
            "q?", docs, ratio=1.0
        )
    forced = Compressor(
        CompressionConfig(**base, reorder="attnrank", position_profile=str(bad), force_position_profile=True)
    ).compress("Where is Paris?", docs, ratio=1.0)
    assert [d.id for d in forced.documents] == [d.id for d in ctx.documents]
    with pytest.raises(CtxcompError, match="ctxcomp calibrate"):
        Compressor(CompressionConfig(**base, reorder="attnrank")).compress("q?", docs, ratio=1.0)

    comp = Compressor(CompressionConfig(**base, reorder="attention_sort"))
    out = comp.compress("Where is Paris?", docs, ratio=1.0)
    assert sorted(d.id for d in out.documents) == ["0", "1", "2"]
    assert comp.reader.lm is comp.proxy  # the proxy is reused, not loaded again
    out2 = Compressor(CompressionConfig(**base, reorder="found_in_middle")).compress(
        "Who slept?", docs, budget=12
    )
    assert out2.stats.kept_tokens <= 12


def test_separate_reader_model(tiny_qwen: Path, tiny_gemma: Path) -> None:
    cfg = CompressionConfig(
        proxy_model=str(tiny_qwen),
        scorer="attention",
        probe_layers=(1,),
        reorder="found_in_middle",
        reader_model=str(tiny_gemma),
    )
    comp = Compressor(cfg)
    ctx = comp.compress("Where is Paris?", DOCS, ratio=1.0)
    assert sorted(d.id for d in ctx.documents) == ["0", "1", "2", "3"]
    r = comp.reader
    assert r.lm is not comp.proxy and r.model_id == Path(tiny_gemma).name
    assert r.num_layers == 6


def test_config_names() -> None:
    for name in ("attnrank", "attention_sort", "found_in_middle", "u_shape", "none"):
        assert CompressionConfig(reorder=name).reorder == name
    with pytest.raises(ConfigError, match="reorder"):
        CompressionConfig(reorder="sideways")
    cfg = CompressionConfig()
    assert cfg.reader_model is None and cfg.position_profile is None and not cfg.force_position_profile


# ---------------------------------------------------------------------------------------------- calibration
def test_rotations_and_groups() -> None:
    assert rotation_offsets(0, 4, 4) == [0, 1, 2, 3]
    assert rotation_offsets(3, 10, 2) == [3, 8]
    counts = np.zeros(10, dtype=int)
    for p in range(20):
        for o in rotation_offsets(p, 10, 1):
            counts[o] += 1
    assert (counts == 2).all()  # a balanced Latin-square subset
    assert rotate(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotate(["a", "b", "c"], 2) == ["b", "c", "a"]
    assert rotate([], 3) == []
    assert layer_groups(24)["late"] == list(range(16, 24))
    assert layer_groups(2) == {"middle": [0], "late": [1]}


def test_calibration_data_formats(tmp_path: Path, kv_file: Path) -> None:
    prompts, h, kind = load_calibration_data(kv_file, k=4, n=5)
    assert kind == "kv" and len(prompts) == 5 and all(len(p.docs) == 4 for p in prompts)
    assert prompts[0].query.startswith("What is the value of key")
    key = prompts[0].query.split('"')[1]
    assert key in prompts[0].docs[0]  # the queried record sits in document 0 before rotation
    assert load_calibration_data(kv_file, k=4, n=5)[1] == h  # deterministic
    assert load_calibration_data(kv_file, k=4, n=4)[1] != h  # the hash covers the data actually used
    grouped, _, _ = load_calibration_data(kv_file, k=3, n=2, records_per_doc=2)
    assert all(d.count("Key:") == 2 for d in grouped[0].docs)

    own = tmp_path / "own.jsonl"
    own.write_text(
        json.dumps({"query": "q1?", "docs": ["a", {"text": "b"}, "c"]})
        + "\n"
        + json.dumps({"query": "q2?", "docs": ["only one"]})
        + "\n"
    )
    prompts, _, kind = load_calibration_data(own, k=3, n=10)
    assert kind == "jsonl" and prompts == [CalibrationPrompt("q1?", ("a", "b", "c"))]

    nq = tmp_path / "nq.jsonl"
    rows = [
        {
            "question": f"question number {i}?",
            "answers": [f"ans{i}"],
            "ctxs": [{"title": f"T{i}", "text": f"passage {i} says ans{i}."}],
        }
        for i in range(40)
    ]
    nq.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts, _, kind = load_calibration_data(nq, k=3, n=50)
    assert kind == "nq" and 0 < len(prompts) < 40  # evaluation-split questions are held out
    for p in prompts:
        i = int(p.query.split()[2].rstrip("?"))
        assert p.docs[0] == f"T{i}. passage {i} says ans{i}."
        assert not any(f"ans{i}" in d for d in p.docs[1:])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(InputError, match="not a known format"):
        load_calibration_data(bad, k=3, n=2)
    with pytest.raises(InputError, match="--data"):
        load_calibration_data(tmp_path / "missing.jsonl", k=3, n=2)


def test_calibrate_small_data_warns(reader: Reader, kv_file: Path) -> None:
    with pytest.warns(CalibrationWarning, match="interval"):
        prof = calibrate(reader, kv_file, 4, 2, n_boot=200)
    assert prof.n == 2 and prof.k == 4
    assert sum(prof.means) == pytest.approx(1.0, rel=1e-4)
    assert prof.meta["rotations_per_prompt"] == 4 and prof.meta["prefills"] == 8
    assert set(prof.layer_groups) == {"early", "middle", "late"}
    assert prof.model_id == reader.model_id


def test_calibrate_prompts_and_k1(reader: Reader) -> None:
    prompts = [CalibrationPrompt(f"q{i}?", (f"doc {i}",)) for i in range(6)]
    prof = calibrate(reader, prompts, 1, 6)
    assert prof.means == (1.0,) and prof.k == 1
    with pytest.raises(InputError, match="documents"):
        calibrate(reader, [CalibrationPrompt("q?", ("a", "b"))], 3, 1)


@pytest.mark.filterwarnings("ignore::ctxcomp.training.calibrate.CalibrationWarning")
def test_calibrate_cli_writes_json_and_plot(
    tiny_qwen: Path, kv_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "profile.json"
    args = [
        "calibrate",
        "--model",
        str(tiny_qwen),
        "--data",
        str(kv_file),
        "--slots",
        "4",
        "--n",
        "6",
        "--rotations",
        "2",
        "--out",
        str(out),
    ]
    plot = tmp_path / "profile.png"
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(plot)]
    except ImportError:
        plot = None  # type: ignore[assignment]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert isinstance(data["means"], list) and len(data["means"]) == 4
    assert data["n"] == 6 and data["model_id"] == Path(tiny_qwen).name
    assert data["meta"]["command"].startswith("ctxcomp calibrate --model")
    assert data["meta"]["prefills"] == 12
    assert "per-slot attention share" in capsys.readouterr().err
    if plot is not None:
        assert plot.stat().st_size > 1000

    # --out holding another model's profile: refused without --force.
    profile_of([1, 2, 3, 4], model_id="another").save(out)
    assert main(args[: args.index("--out") + 2]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args[: args.index("--out") + 2], "--force"]) == 0
    assert json.loads(out.read_text())["model_id"] == Path(tiny_qwen).name
    assert (
        main(
            [
                "calibrate",
                "--model",
                str(tiny_qwen),
                "--data",
                str(tmp_path / "nope.jsonl"),
                "--slots",
                "4",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotDependencyError, match="pip install matplotlib"):
        plot_profile(profile_of([1, 2]), tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------- shipped
SHIPPED = sorted(PROFILES_DIR.glob("*.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_profiles(path: Path) -> None:
    from ctxcomp.models.presets import PRESETS

    prof = PositionProfile.load(path)
    assert prof.model_id == path.stem and prof.model_id in PRESETS
    assert prof.weights_sha256 == PRESETS[prof.model_id].sha256
    assert prof.k >= 2 and sum(prof.means) == pytest.approx(1.0, rel=1e-4)
    assert all(lo <= m <= hi for lo, m, hi in zip(prof.ci_low, prof.means, prof.ci_high, strict=True))
    assert prof.n >= 10 and len(prof.data_hash) == 64
    assert "ctxcomp calibrate" in prof.meta["command"]
