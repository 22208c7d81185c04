"""One-pass SHA-256 / AutoV2 / AutoV3 and the SQLite cache keyed by file state."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _model_fixtures import write_safetensors
from sdguard.model_hashes import FileHashes, FileKey, HashCache, default_cache_dir, hash_file, same_hash
from sdguard.safetensors_header import read_header


def test_hashes_match_hashlib_and_kohya_definition(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"ss_output_name": "m"})
    data = path.read_bytes()
    offset = read_header(path).data_offset
    hashes = hash_file(path, data_offset=offset)
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.autov2 == hashes.sha256[:10]
    # kohya's addnet_hash_safetensors: SHA-256 of everything after the 8-byte length and the header.
    n = int.from_bytes(data[:8], "little")
    assert hashes.autov3 == hashlib.sha256(data[n + 8:]).hexdigest()


def test_autov3_ignores_metadata_edits(tmp_path: Path) -> None:
    a = write_safetensors(tmp_path / "a.safetensors", {"ss_output_name": "one"})
    b = write_safetensors(tmp_path / "b.safetensors", {"ss_output_name": "another name entirely"})
    ha = hash_file(a, data_offset=read_header(a).data_offset)
    hb = hash_file(b, data_offset=read_header(b).data_offset)
    assert ha.sha256 != hb.sha256 and ha.autov3 == hb.autov3


def test_no_offset_no_autov3(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"abc")
    assert hash_file(path) == FileHashes(hashlib.sha256(b"abc").hexdigest(), hashlib.sha256(b"abc").hexdigest()[:10])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), offset=st.integers(0, 320), read_bytes=st.integers(1, 64))
def test_chunk_boundaries_do_not_matter(tmp_path: Path, data: bytes, offset: int, read_bytes: int) -> None:
    path = tmp_path / "chunks.bin"
    path.write_bytes(data)
    hashes = hash_file(path, data_offset=offset, read_bytes=read_bytes)
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.autov3 == hashlib.sha256(data[offset:]).hexdigest()


def test_same_hash_ignores_case() -> None:
    assert same_hash("ABCDEF0123", "abcdef0123") and not same_hash("abcdef0123", "abcdef0124")


def _key(path: Path) -> FileKey:
    return FileKey.of(path)


def test_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "c.sqlite")
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    hashes = FileHashes("a" * 64, "a" * 10, None)
    cache.put_hashes(_key(path), hashes)
    assert cache.get_hashes(_key(path)) == hashes
    # A new cache object on the same database sees it (persistence).
    assert HashCache(tmp_path / "c.sqlite").get_hashes(_key(path)) == hashes
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache.get_hashes(_key(path)) is None  # mtime changed
    cache.put_hashes(_key(path), hashes)
    path.write_bytes(b"longer")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache.get_hashes(_key(path)) is None  # size changed


def test_cache_misses_when_a_file_is_replaced(tmp_path: Path) -> None:
    cache = HashCache(":memory:")
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    cache.put_hashes(_key(path), FileHashes("a" * 64, "a" * 10))
    keep = tmp_path / "keep.bin"  # holds the old inode so the new file cannot reuse it
    os.link(path, keep)
    stat = path.stat()
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"two")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    key = _key(path)
    assert (key.size, key.mtime_ns) == (stat.st_size, stat.st_mtime_ns) and key.inode != stat.st_ino
    assert cache.get_hashes(key) is None


@pytest.mark.skipif(sys.platform == "win32", reason="Windows reports the creation time as st_ctime")
def test_cache_misses_when_a_file_is_rewritten_in_place_with_its_mtime_put_back(tmp_path: Path) -> None:
    cache = HashCache(":memory:")
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    stat = path.stat()
    cache.put_hashes(_key(path), FileHashes("a" * 64, "a" * 10))
    time.sleep(0.01)                       # a coarse clock could otherwise give the same ctime
    path.write_bytes(b"two")                # same size, same inode
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    key = _key(path)
    assert (key.size, key.mtime_ns, key.inode) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    assert cache.get_hashes(key) is None    # the ctime moved


def test_verdict_cache_is_per_screen_key(tmp_path: Path) -> None:
    cache = HashCache(":memory:")
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    cache.put_verdict(_key(path), "k1", {"action": "allow"})
    assert cache.get_verdict(_key(path), "k1") == {"action": "allow"}
    assert cache.get_verdict(_key(path), "k2") is None


def test_unusable_cache_location_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="sdguard.model"):
        cache = HashCache(blocker / "sub" / "c.sqlite")
    assert "unavailable" in caplog.text
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    cache.put_hashes(_key(path), FileHashes("a" * 64, "a" * 10))
    assert cache.get_hashes(_key(path)) is None


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SDGUARD_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SDGUARD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name != "nt":
        assert default_cache_dir() == tmp_path / "xdg" / "sdguard"


@pytest.mark.parametrize("offset", [0, 100, (1 << 20) + 5])
def test_large_reads_hash_autov3_on_a_second_thread(tmp_path: Path, offset: int) -> None:
    data = os.urandom(3 << 20) + b"tail"
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    hashes = hash_file(path, data_offset=offset, read_bytes=(1 << 20) + 7)
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.autov3 == hashlib.sha256(data[offset:]).hexdigest()
