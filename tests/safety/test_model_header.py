"""The safetensors header reader: valid files parse, every broken one gives an error, never a crash."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _model_fixtures import safetensors_bytes, write_safetensors
from sdguard.safetensors_header import MAX_HEADER_BYTES, parse_header, read_header


def _with_header(header: dict | str | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_valid_file_matches_the_reference_reader(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    path = write_safetensors(tmp_path / "lora.safetensors", {"ss_output_name": "x", "modelspec.title": "T"},
                             tensors={"a": ("F32", [2, 3]), "b": ("U8", [5]), "empty": ("F16", [0, 4])})
    header = read_header(path)
    assert header.error is None
    assert header.metadata == {"ss_output_name": "x", "modelspec.title": "T"}
    with safetensors.safe_open(str(path), "np") as f:
        assert sorted(t.name for t in header.tensors) == sorted(f.keys())
        assert f.metadata() == header.metadata
    assert header.data_offset == 8 + header.header_size
    assert header.data_offset + sum(t.end - t.begin for t in header.tensors) == path.stat().st_size


def test_file_written_by_safetensors_itself(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    save_file = pytest.importorskip("safetensors.numpy").save_file
    path = tmp_path / "ref.safetensors"
    save_file({"w": numpy.ones((3, 4), numpy.float16), "b": numpy.zeros(7, numpy.int64)}, str(path), {"k": "v"})
    header = read_header(path)
    assert header.error is None and header.metadata == {"k": "v"}
    assert {t.name: t.shape for t in header.tensors} == {"w": (3, 4), "b": (7,)}


def test_no_metadata_and_no_tensors_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(_with_header({}))
    header = read_header(path)
    assert header.error is None and header.metadata == {} and header.tensors == ()


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("content, message", [
    (b"", "file too short"),
    (b"\x05\x00\x00", "file too short"),
    (struct.pack("<Q", 1000) + b"{}", "larger than the file"),
    (struct.pack("<Q", 2**64 - 1) + b"{}", "larger than the file"),
    (_with_header(b"\xff\xfe{}"), "not UTF-8"),
    (_with_header("{not json"), "not valid JSON"),
    (_with_header("[1, 2]"), "not a JSON object"),
    (_with_header('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                  '"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', bytes(8)), "duplicate key"),
    (_with_header({"__metadata__": {"k": 1}}), "must be a string"),
    (_with_header({"__metadata__": ["x"]}), "must be an object"),
    (_with_header({"a": {"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)), "unknown dtype"),
    (_with_header({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)), "shape"),
    (_with_header({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4)), "shape"),
    (_with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8)), "data_offsets"),
    (_with_header({"a": {"dtype": "F32", "shape": [2]}}, bytes(8)), "exactly dtype"),
    (_with_header({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)), "needs 12 bytes"),
    (_with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4)), "truncated"),
    (_with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(12)), "holds 12 bytes"),
    (_with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)), "overlaps"),
    (_with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)), "gap"),
    (_with_header({"a": {"dtype": "F32", "shape": [10**9] * 50, "data_offsets": [0, 8]}}, bytes(8)),
     "data_offsets give 8"),
    (_with_header("[" * 100_000 + "]" * 100_000), "header"),
])
def test_malformed_files_give_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    header = read_header(path)
    assert header.error is not None and message in header.error, header.error
    assert header.metadata == {} and header.tensors == () and header.data_offset is None


def test_oversized_header_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:  # sparse: the claimed header is never written or read
        f.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        f.truncate(MAX_HEADER_BYTES + 1024)
    start = time.perf_counter()
    header = read_header(path)
    assert "exceeds the limit" in header.error
    assert time.perf_counter() - start < 0.5


def test_only_the_header_is_read(tmp_path: Path) -> None:
    """A 4 GB (sparse) tensor costs nothing: the reader never touches the data."""
    path = tmp_path / "big.safetensors"
    data_size = 4 << 30
    head = _with_header({"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}})
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + data_size)
    start = time.perf_counter()
    header = read_header(path)
    assert header.error is None and header.tensors[0].shape == (data_size,)
    assert time.perf_counter() - start < 1.0  # reading 4 GB, even sparse, takes seconds


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "nope.safetensors")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes_never_crash(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    header = read_header(path)
    assert header.error is None or isinstance(header.error, str)


_VALID = safetensors_bytes({"ss_tag_frequency": json.dumps({"d": {"a": 1}})})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, len(_VALID) - 1), value=st.integers(0, 255), cut=st.integers(0, len(_VALID)))
def test_fuzz_mutated_valid_file(tmp_path: Path, position: int, value: int, cut: int) -> None:
    """Flip one byte and truncate: the result is either valid (and then self-consistent) or an error."""
    data = bytearray(_VALID)
    data[position] = value
    path = tmp_path / "mut.safetensors"
    path.write_bytes(bytes(data[:cut]))
    header = read_header(path)
    if header.error is None:
        assert header.data_offset + sum(t.end - t.begin for t in header.tensors) == cut


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 2**65) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(["__metadata__", "a", "b"]) | st.text(max_size=4),
                           _json_values | st.fixed_dictionaries(
                               {"dtype": st.sampled_from(["F32", "U8", "F4", "X"]),
                                "shape": st.lists(st.integers(-1, 5), max_size=3),
                                "data_offsets": st.lists(st.integers(-1, 40), min_size=2, max_size=2)}),
                           max_size=4),
       data_size=st.integers(0, 40))
def test_fuzz_structured_headers(doc: dict, data_size: int) -> None:
    from sdguard.safetensors_header import HeaderError

    try:
        metadata, tensors = parse_header(json.dumps(doc).encode(), data_size)
    except HeaderError as e:
        assert str(e)
    else:
        assert all(isinstance(v, str) for v in metadata.values())
        assert sum(t.end - t.begin for t in tensors) == data_size


def _parse_both(raw: bytes, data_size: int, monkeypatch: pytest.MonkeyPatch):
    """parse_header's result (or error), with the whole-list fast path and without it."""
    from sdguard import safetensors_header as sh

    results = []
    for fast in (True, False):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(sh, "_fast_tensors", lambda entries, size: None)
            try:
                results.append(sh.parse_header(raw, data_size))
            except sh.HeaderError as e:
                results.append(str(e))
    return results


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tensors=st.dictionaries(st.text(max_size=3), st.fixed_dictionaries(
           {"dtype": st.sampled_from(["F32", "U8", "F4", "BOOL", "X"]),
            "shape": st.lists(st.integers(-1, 4) | st.booleans(), max_size=10),
            "data_offsets": st.lists(st.integers(-1, 24), min_size=1, max_size=3)}), max_size=4),
       data_size=st.integers(0, 24))
def test_fast_path_accepts_exactly_what_the_entry_by_entry_path_does(tensors: dict, data_size: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _parse_both(json.dumps(tensors).encode(), data_size, monkeypatch)
    assert fast == slow


def test_a_checkpoint_sized_header_is_validated_without_per_tensor_python(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdguard import safetensors_header as sh

    raw = safetensors_bytes(tensors={f"t{i}": ("F16", [4, 2]) for i in range(3000)})
    monkeypatch.setattr(sh, "_tensor", lambda *a: pytest.fail("per-tensor validation on a valid header"))
    (n,) = struct.unpack("<Q", raw[:8])
    _, tensors = parse_header(raw[8:8 + n], len(raw) - 8 - n)
    assert len(tensors) == 3000 and tensors[0] == ("t0", "F16", (4, 2), 0, 16)
