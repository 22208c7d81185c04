"""The pickle scanner lists imports without unpickling and names the dangerous ones."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from _model_fixtures import damaged_zip
from sdguard import pickle_scan
from sdguard.pickle_scan import UNRESOLVED, is_dangerous, scan_pickle_file


class _Payload:
    """Unpickling this would run a shell command that creates `marker`. The scanner must not."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_malicious_raw_pickle_is_named_and_never_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "x": _Payload(marker)}, protocol=protocol))
    scan = scan_pickle_file(path)
    assert scan.error is None and scan.container == "raw"
    assert scan.dangerous == (f"{os.system.__module__}.system",)  # posix.system / nt.system
    assert not marker.exists()


def test_builtins_eval_is_dangerous(tmp_path: Path) -> None:
    path = tmp_path / "eval.pt"
    path.write_bytes(pickle.dumps([_Eval()], protocol=4))
    assert scan_pickle_file(path).dangerous == ("builtins.eval",)


def test_benign_torch_zip_and_legacy_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {"model.weight": torch.zeros(2, 3), "step": 5}
    torch.save(state, tmp_path / "new.pt")
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    for name, container in (("new.pt", "zip"), ("old.pt", "raw")):
        scan = scan_pickle_file(tmp_path / name)
        assert scan.error is None and scan.container == container
        assert "torch._utils._rebuild_tensor_v2" in scan.globals
        assert scan.dangerous == () and scan.unknown == ()


def test_malicious_member_of_a_torch_zip(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with zipfile.ZipFile(path, "w") as z:  # the layout torch.save writes: <name>/data.pkl
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Payload(marker)}, protocol=2))
        z.writestr("archive/version", "3\n")
    scan = scan_pickle_file(path)
    assert scan.container == "zip" and scan.dangerous and not marker.exists()


def test_pickle_with_a_zip_appended_is_scanned_as_the_pickle(tmp_path: Path) -> None:
    # torch.load takes the zip path only when the file starts with a zip header; otherwise it
    # unpickles from byte 0, whatever zip follows (zipfile.is_zipfile finds one at the end).
    marker = tmp_path / "pwned"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
    path = tmp_path / "polyglot.ckpt"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=2) + archive.getvalue())
    scan = scan_pickle_file(path)
    assert scan.container == "raw"
    assert f"{os.system.__module__}.system" in scan.dangerous and not marker.exists()


def test_legacy_tar_checkpoint_is_refused(tmp_path: Path) -> None:
    # torch.load opens a file whose first block is a tar header as its legacy tar format and
    # unpickles the 'storages' member; the first member's name 'N.' also parses as a pickle.
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy_tar.pt"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("N.", b""), ("storages", pickle.dumps(_Payload(marker), protocol=2))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    scan = scan_pickle_file(path)
    assert scan.container == "tar" and "legacy tar format" in scan.error
    assert not marker.exists()


def test_zip_without_pickle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "not_torch.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    assert "without a .pkl member" in scan_pickle_file(path).error


def _zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members.items():
            z.writestr(name, body)
    return path


def test_opcodes_are_capped_per_file_across_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A few KB of deflated b"N" opcodes kept the CPU busy for minutes; each member alone fits the cap.
    monkeypatch.setattr(pickle_scan, "MAX_OPCODES", 1000)
    body = b"\x80\x02" + b"N" * 600 + b"."
    one = _zip_of(tmp_path / "one.pt", {"archive/data.pkl": body})
    assert scan_pickle_file(one).error is None
    two = _zip_of(tmp_path / "two.pt", {"archive/data.pkl": body, "archive/more.pkl": body})
    assert "more than 1000 pickle opcodes" in scan_pickle_file(two).error


def test_pickle_bytes_are_capped_per_file_across_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pickle_scan, "MAX_PICKLE_BYTES", 1000)
    body = pickle.dumps(list(range(1000, 1200)), protocol=2)
    assert 500 < len(body) <= 1000
    path = _zip_of(tmp_path / "two.pt", {"archive/data.pkl": body, "archive/more.pkl": body})
    assert "above the 1000-byte scan limit" in scan_pickle_file(path).error


def test_pickle_members_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pickle_scan, "MAX_PICKLE_MEMBERS", 3)
    path = _zip_of(tmp_path / "many.pt", {f"archive/{i}.pkl": b"N." for i in range(4)})
    assert "4 .pkl members" in scan_pickle_file(path).error


def test_scan_memory_does_not_grow_with_opcodes(tmp_path: Path) -> None:
    path = tmp_path / "long.pkl"
    path.write_bytes(b"\x80\x02" + b"N" * 200_000 + b".")
    tracemalloc.start()
    try:
        assert scan_pickle_file(path).error is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 500_000  # one entry per opcode kept would be > 1.6 MB


@pytest.mark.parametrize("damage", ["encrypted", "deflate", "bzip2", "lzma"])
def test_damaged_or_encrypted_member_is_an_error_not_a_crash(tmp_path: Path, damage: str) -> None:
    scan = scan_pickle_file(damaged_zip(tmp_path / f"{damage}.pt", damage))
    assert scan.container == "zip" and "unreadable zip archive" in scan.error


def test_stack_global_through_the_memo_is_resolved(tmp_path: Path) -> None:
    # Protocol 4: 'os' and 'system' pushed, memoized, then fetched back from the memo.
    body = (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x02id\x94\x85\x94R\x94.")
    path = tmp_path / "memo.pkl"
    path.write_bytes(body)
    assert scan_pickle_file(path).dangerous == ("os.system",)


def test_unresolvable_stack_global_counts_as_dangerous(tmp_path: Path) -> None:
    # The module name comes from a tuple element; the scanner cannot tell what it is.
    body = b"\x80\x04\x8c\x02os\x8c\x06system\x86\x94\x8c\x06system\x93."
    path = tmp_path / "odd.pkl"
    path.write_bytes(body)
    assert UNRESOLVED in scan_pickle_file(path).dangerous


def test_not_a_pickle_and_truncated_pickle_are_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\xff\x00 definitely not a pickle")
    assert "not a valid pickle" in scan_pickle_file(garbage).error
    truncated = tmp_path / "trunc.ckpt"
    truncated.write_bytes(pickle.dumps({"a": list(range(100))}, protocol=2)[:-10])
    assert "not a valid pickle" in scan_pickle_file(truncated).error


def test_a_later_pickle_that_does_not_parse_is_an_error(tmp_path: Path) -> None:
    # The legacy torch layout: magic number, protocol, ... The second pickle is b"I0x3e9\n.", which
    # the unpickler reads as int("0x3e9", 0) but genops rejects; the payload in the third must not
    # pass unseen because the scan stopped at the second.
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"I0x3e9\n."
                     + pickle.dumps(_Payload(marker), protocol=2))
    assert "pickle 2: not a valid pickle" in scan_pickle_file(path).error
    assert not marker.exists()


def test_bytes_after_five_pickles_are_not_read(tmp_path: Path) -> None:
    # What follows the legacy format's five pickles is raw tensor data, never unpickled.
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"".join(pickle.dumps(i, protocol=2) for i in range(5)) + b"\xff\x00 tensor bytes")
    scan = scan_pickle_file(path)
    assert scan.error is None and scan.globals == ()


def test_python2_name_of_a_dangerous_import_is_dangerous(tmp_path: Path) -> None:
    # Loading maps cPickle.loads to pickle.loads (protocol < 3), which would unpickle the nested
    # payload the scan never sees.
    inner = pickle.dumps(_Eval(), protocol=2)
    path = tmp_path / "cpickle.pt"
    path.write_bytes(b"\x80\x02ccPickle\nloads\nC" + bytes([len(inner)]) + inner + b"\x85R.")
    scan = scan_pickle_file(path)
    assert scan.dangerous == ("cPickle.loads",) and scan.unknown == ()


def test_a_safe_name_extended_by_attributes_is_not_safe(tmp_path: Path) -> None:
    # STACK_GLOBAL('torch._utils', '_rebuild_tensor_v2.__builtins__.get')('exec')(code): torch.load
    # runs the code, and the name starts with a safe prefix.
    def short(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    path = tmp_path / "walk.pt"
    path.write_bytes(b"\x80\x04" + short("torch._utils") + short("_rebuild_tensor_v2.__builtins__.get") + b"\x93"
                     + short("exec") + b"\x85R" + short("1 + 1") + b"\x85R.")
    assert scan_pickle_file(path).dangerous == ("torch._utils._rebuild_tensor_v2.__builtins__.get",)
    path.write_bytes(b"\x80\x04" + short("torch._utils") + short("_rebuild_tensor_v2.x") + b"\x93.")
    assert scan_pickle_file(path).unknown == ("torch._utils._rebuild_tensor_v2.x",)
    # A walk through another module's `import os` needs no dunder: torch.serialization.os.system.
    path.write_bytes(b"\x80\x04" + short("torch.serialization") + short("os.system") + b"\x93"
                     + short("true") + b"\x85R.")
    scan = scan_pickle_file(path)
    assert "os.system" in scan.dangerous and "os.system" not in scan.unknown


def test_unknown_imports_are_listed(tmp_path: Path) -> None:
    from decimal import Decimal

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"lr": Decimal("0.1")}, protocol=2))
    scan = scan_pickle_file(path)
    assert scan.unknown == ("decimal.Decimal",) and scan.dangerous == ()


@pytest.mark.parametrize("name, dangerous", [
    ("os.system", True), ("posix.system", True), ("nt.system", True), ("subprocess.Popen", True),
    ("builtins.exec", True), ("builtins.getattr", True), ("runpy._run_code", True), ("socket.socket", True),
    ("shutil.rmtree", True), ("importlib.import_module", True), ("sys.modules", True), ("pty.spawn", True),
    ("webbrowser.open", True), ("os.path.join", True), ("collections.OrderedDict", False),
    # Python 2 names a protocol 0-2 pickle maps to Python 3 ones when it is loaded.
    ("cPickle.loads", True), ("__builtin__.reduce", True), ("cStringIO.open", True),
    ("copy_reg._reconstructor", False), ("__builtin__.set", False),
    # Modules and functions outside the obvious list that run commands or write files.
    ("pydoc.pipepager", True), ("_io.open", True), ("codecs.open", True), ("_operator.attrgetter", True),
    ("_posixsubprocess.fork_exec", True), ("_winapi.CreateProcess", True),
    # Attribute walks through dunders (protocol 4 resolves dotted names), even from a safe name.
    ("torch._utils._rebuild_tensor_v2.__builtins__.get", True), ("builtins.object.__subclasses__", True),
    ("collections.OrderedDict.__init__.__globals__.get", True), ("copyreg.__newobj__", False),
    ("torch._utils._rebuild_tensor_v2", False), ("builtins.set", False), ("osmium.thing", False),
])
def test_dangerous_names(name: str, dangerous: bool) -> None:
    assert is_dangerous(name) is dangerous
