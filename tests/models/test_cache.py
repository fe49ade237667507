"""The model cache: checksums recorded at caching time, verified on load, `ctxcomp cache info|clear`.

Every test points ``$CTXCOMP_CACHE`` at a temporary folder and builds a cache entry there by
copying a tiny random model into the loader's layout (``models/<name>-<sha12>/`` with its
manifest), registered as a preset; the real cache is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ctxcomp import CompressionConfig, Compressor
from ctxcomp.cli import main
from ctxcomp.errors import ConfigError, IntegrityError
from ctxcomp.models import cache, loader
from ctxcomp.models.presets import PRESETS, Preset

SHA = "ab" * 32
ENTRY = f"models/tiny-preset-{SHA[:12]}"
DOCS = ["The lighthouse was built in 1874 by Margaret Doyle. It is 31 metres tall.", "Ferries run hourly."]


@pytest.fixture()
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_qwen: Path) -> Path:
    """A temporary cache holding one verified entry, the tiny Qwen registered as preset ``tiny-preset``."""
    root = tmp_path / "cache"
    monkeypatch.setenv("CTXCOMP_CACHE", str(root))
    monkeypatch.delenv(cache.VERIFY_ENV, raising=False)
    folder = root / ENTRY
    shutil.copytree(tiny_qwen, folder)
    cache.write_manifest(folder, {"gguf": "tiny.gguf", "sha256": SHA, "name": "tiny-preset"})
    (root / "gguf").mkdir()
    (root / "gguf" / "tiny.gguf").write_bytes(b"GGUF")
    (root / "features" / "k1").mkdir(parents=True)
    (root / "features" / "k1" / "a.npz").write_bytes(b"x" * 10)
    monkeypatch.setitem(PRESETS, "tiny-preset", Preset("tiny-preset", "tiny.gguf", SHA, (), "-", "-", (1, 2)))
    return root


def compressor() -> Compressor:
    return Compressor(CompressionConfig(proxy_model="tiny-preset", scorer="attention"))


def weights(root: Path) -> Path:
    return root / ENTRY / "model.safetensors"


def overwrite_middle(path: Path, n: int = 4096) -> None:
    """Overwrite ``n`` bytes in the middle of ``path`` with random bytes (same size: only a hash tells)."""
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(size // 2)
        fh.write(os.urandom(min(n, size // 4)))


def test_intact_entry_loads_and_is_verified(cache_root: Path) -> None:
    ctx = compressor().compress("Who built the lighthouse?", DOCS, ratio=0.5)
    assert ctx.stats.kept_tokens > 0
    marker = json.loads((cache_root / ENTRY / cache.MARKER).read_text())
    assert marker["format"] == cache.MANIFEST_FORMAT and marker["recorded"] == "at-caching"
    assert marker["files"]["model.safetensors"]["size"] == weights(cache_root).stat().st_size
    assert cache.verify_folder(cache_root / ENTRY) == "verified"


def test_overwritten_weights_are_an_integrity_error(cache_root: Path) -> None:
    """Issue 16: overwriting part of the cached safetensors loaded silently and changed every score."""
    overwrite_middle(weights(cache_root))
    with pytest.raises(IntegrityError) as err:
        compressor().load()
    msg = str(err.value)
    assert "model.safetensors" in msg and "sha256" in msg
    assert f"ctxcomp cache clear {ENTRY}" in msg


def test_truncated_weights_are_an_integrity_error(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16: a truncated safetensors gave a raw SafetensorError (exit 1)."""
    path = weights(cache_root)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    monkeypatch.setenv(cache.VERIFY_ENV, "size")  # sizes alone catch a truncation
    with pytest.raises(IntegrityError, match=r"model\.safetensors is \d+ bytes, but \d+ were cached"):
        compressor().load()


def test_size_only_mode_still_names_a_file_that_does_not_load(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With hashing opted out, a damaged header that safetensors rejects is still a named error."""
    path = weights(cache_root)
    data = bytearray(path.read_bytes())
    data[:64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    monkeypatch.setenv(cache.VERIFY_ENV, "size")
    with pytest.raises(IntegrityError, match="ctxcomp cache clear"):
        compressor().load()


def test_missing_and_unexpected_files(cache_root: Path) -> None:
    folder = cache_root / ENTRY
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(IntegrityError, match="not cached"):
        cache.verify_folder(folder)
    (folder / "pytorch_model.bin").unlink()
    (folder / ".DS_Store").write_bytes(b"hidden files are ignored")
    assert cache.verify_folder(folder) == "verified"
    (folder / "tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match=r"tokenizer\.json is missing"):
        cache.verify_folder(folder)


def test_legacy_entry_records_checksums_at_first_load(cache_root: Path) -> None:
    marker = cache_root / ENTRY / cache.MARKER
    marker.write_text(json.dumps({"gguf": "tiny.gguf", "sha256": SHA, "name": "tiny-preset"}))
    assert "unverified" in {e.name: e.status for e in cache.entries(verify="hash")}[ENTRY]
    compressor().load()
    assert json.loads(marker.read_text())["recorded"] == "first-load"
    overwrite_middle(weights(cache_root))
    with pytest.raises(IntegrityError):
        compressor().load()


def test_bad_verify_setting(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.VERIFY_ENV, "never")
    with pytest.raises(ConfigError, match="CTXCOMP_VERIFY_CACHE"):
        compressor().load()


def test_cli_compress_on_damaged_cache_exits_2(
    cache_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    overwrite_middle(weights(cache_root))
    rc = main(
        [
            "compress",
            "--query",
            "Who?",
            "--docs",
            str(docs),
            "--proxy",
            "tiny-preset",
            "--scorer",
            "attention",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("ctxcomp: error: proxy_model:") and "ctxcomp cache clear" in err


def test_cache_info_lists_and_flags_damage(cache_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache_root) in out and ENTRY in out and "verified" in out and "gguf/tiny.gguf" in out
    overwrite_middle(weights(cache_root))
    assert main(["cache", "info", "--quick"]) == 0  # sizes are fine
    assert main(["cache", "info", "--json"]) == 3
    cap = capsys.readouterr()
    listing = json.loads(cap.out.splitlines()[-1])
    status = {e["name"]: e["status"] for e in listing["entries"]}
    assert status[ENTRY].startswith("DAMAGED") and "model.safetensors" in status[ENTRY]
    assert f"ctxcomp cache clear {ENTRY}" in cap.err
    assert listing["total_bytes"] == sum(e["bytes"] for e in listing["entries"])


def test_cache_clear(cache_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cache_root / "notes.txt").write_text("not ctxcomp's")
    assert main(["cache", "clear"]) == 2  # nothing named
    assert main(["cache", "clear", "no-such-thing"]) == 2
    assert main(["cache", "clear", "../.."]) == 2  # never outside the cache's sections
    assert main(["cache", "clear", "--dry-run", "tiny-preset"]) == 0
    assert (cache_root / ENTRY).is_dir()
    assert main(["cache", "clear", "tiny-preset"]) == 0  # the model's folder and its GGUF
    assert not (cache_root / ENTRY).exists() and not (cache_root / "gguf" / "tiny.gguf").exists()
    assert (cache_root / "features" / "k1").is_dir()
    assert main(["cache", "clear", "features/k1"]) == 0
    assert not (cache_root / "features" / "k1").exists()
    (cache_root / "bench").mkdir()
    (cache_root / "bench" / "memo.jsonl").write_text("{}")
    assert main(["cache", "clear", "--all"]) == 0
    assert not list((cache_root / "bench").iterdir())
    assert (cache_root / "notes.txt").read_text() == "not ctxcomp's"  # --all leaves what it did not write
    capsys.readouterr()


def test_loader_reexports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path))
    assert loader.cache_dir() == cache.cache_dir() == tmp_path
    assert loader.sha256_file is cache.sha256_file


@pytest.mark.slow
def test_dequantised_preset_gets_a_manifest_at_caching_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real path: assemble the default preset's GGUF, dequantise it, record the manifest (minutes)."""
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path))
    src = loader.materialise("gemma-3-270m")
    marker = json.loads((Path(src.location) / cache.MARKER).read_text())
    assert marker["recorded"] == "at-caching" and "model.safetensors" in marker["files"]
    assert cache.verify_folder(Path(src.location)) == "verified"


def test_verified_state_is_stamped_and_a_rewrite_is_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights")
    cache.write_manifest(folder, {"name": "m"})
    assert cache.verify_folder(folder, mode="hash") == "verified"
    assert (folder / cache.STAMPS).is_file()

    def no_hashing(path: Path, chunk: int = 0) -> str:
        raise AssertionError("an unchanged, stamped file must not be hashed again")

    monkeypatch.setattr(cache, "sha256_file", no_hashing)
    monkeypatch.setattr(cache, "_HASHES", {})  # a new process: no in-memory memo
    assert cache.verify_folder(folder, mode="hash") == "verified"
    monkeypatch.undo()
    (folder / "w.bin").write_bytes(b"WEIGHTS")  # same size, new content and mtime
    st = (folder / "w.bin").stat()
    os.utime(folder / "w.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(IntegrityError, match=r"w\.bin has sha256"):
        cache.verify_folder(folder, mode="hash")
