"""Model-spec resolution, preset integrity and dependency errors (no real weights needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ctxcomp.errors import IntegrityError, MissingDependencyError, UnknownModelError
from ctxcomp.models import loader
from ctxcomp.models.presets import PRESETS, Preset


def test_resolve_kinds(tmp_path: Path, tiny_qwen: Path) -> None:
    assert loader.resolve_spec("gemma-3-270m").kind == "preset"
    assert loader.resolve_spec(str(tiny_qwen)).kind == "dir"
    assert loader.resolve_spec("Qwen/Qwen2.5-0.5B-Instruct").kind == "hub"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF...")
    assert loader.resolve_spec(str(gguf)).kind == "gguf"


@pytest.mark.parametrize("spec", ["no-such-model", "./missing/dir", "a/b/c", "/nope.gguf"])
def test_unknown_spec_lists_presets(spec: str) -> None:
    with pytest.raises(UnknownModelError) as err:
        loader.resolve_spec(spec)
    msg = str(err.value)
    assert "proxy_model" in msg and "Fix:" in msg
    if not spec.endswith(".gguf"):
        assert all(p in msg for p in PRESETS)


def test_dir_without_config(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"config\.json"):
        loader.resolve_spec(str(tmp_path))


def _fake_preset(tmp_path: Path, sha: str) -> Preset:
    pkg = tmp_path / "fake_chunks_pkg"
    (pkg / "data").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "p0").write_bytes(b"hello ")
    (pkg / "data" / "p1").write_bytes(b"world")
    if str(tmp_path) not in sys.path:
        sys.path.insert(0, str(tmp_path))
    return Preset(
        "fake",
        "fake.gguf",
        sha,
        (("fake_chunks_pkg", "data/p0"), ("fake_chunks_pkg", "data/p1")),
        "pip install fake",
        "none",
        (0,),
    )


def test_assemble_verifies_sha(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path / "cache"))
    good = hashlib.sha256(b"hello world").hexdigest()
    path = loader.assemble_preset(_fake_preset(tmp_path, good))
    assert path.read_bytes() == b"hello world"
    assert loader.assemble_preset(_fake_preset(tmp_path, good)) == path  # cached, re-verified
    with pytest.raises(IntegrityError, match="sha256"):
        loader.assemble_preset(_fake_preset(tmp_path, "0" * 64), tmp_path / "other")
    assert not list((tmp_path / "other").glob("*.gguf")), "a bad file must never be left behind"


def test_missing_chunk_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path))
    p = Preset(
        "x",
        "x.gguf",
        "0" * 64,
        (("ctxcomp_no_such_pkg", "data/p"),),
        "pip install 'ctxcomp[offline]'",
        "none",
        (0,),
    )
    with pytest.raises(MissingDependencyError, match=r"ctxcomp\[offline\]"):
        loader.assemble_preset(p)


def test_missing_gguf_dependency_names_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF but not really a model")
    monkeypatch.setitem(sys.modules, "gguf", None)  # any import of gguf now fails, however it is done
    with pytest.raises(MissingDependencyError, match=r"ctxcomp\[offline\]"):
        loader.materialise(str(gguf))


def test_a_file_that_is_not_gguf_is_a_named_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not really a gguf")
    with pytest.raises(UnknownModelError, match=r"proxy_model: .* is not a GGUF file.*Fix:"):
        loader.materialise(str(bad), field="proxy_model")


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path))
    assert loader.cache_dir() == tmp_path


def test_warm_loads_show_no_transformers_bars(
    tiny_qwen: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    tl = transformers.utils.logging
    was = tl.is_progress_bar_enabled()
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # a CLI test may have set it
    tl.enable_progress_bar()  # as in a fresh process (the CLI's tests turn it off globally)
    try:
        loader.load_causal_lm(str(tiny_qwen), device="cpu", dtype="float32", attn_implementation="sdpa")
        assert "Loading weights" not in capfd.readouterr().err
        assert tl.is_progress_bar_enabled()  # the user's setting is restored
    finally:
        (tl.enable_progress_bar if was else tl.disable_progress_bar)()
