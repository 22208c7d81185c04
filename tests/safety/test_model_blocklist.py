"""Hash blocklists: CSV and JSON import, strict validation, matching by any hash type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdguard.hash_blocklist import Blocklist, BlocklistEntry, BlocklistError
from sdguard.model_hashes import FileHashes

ROOT = Path(__file__).resolve().parents[2]
SHA = "ab" * 32
HASHES = FileHashes(SHA, SHA[:10], "cd" * 32)


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "list.csv"
    path.write_text(body)
    return path


def test_csv_with_comments_optional_columns_and_any_case(tmp_path: Path) -> None:
    path = _csv(tmp_path, "# a comment\nhash_type,hash,category,reason,source\n"
                          f"SHA256,{SHA.upper()},minor_sexual,\"seen, twice\",mod:1\n"
                          "autov2,ABABABABAB,real_person,,\n")
    bl = Blocklist.load(path)
    assert bl.entries[0] == BlocklistEntry("sha256", SHA, "minor_sexual", "seen, twice", "mod:1")
    assert [e.category for e in bl.match(HASHES)] == ["minor_sexual", "real_person"]


def test_columns_in_any_order_and_without_optional_ones(tmp_path: Path) -> None:
    bl = Blocklist.load(_csv(tmp_path, f"category,hash,hash_type\nsexual,{SHA},sha256\n"))
    assert bl.entries == (BlocklistEntry("sha256", SHA, "sexual"),)


def test_json_list_and_entries_object(tmp_path: Path) -> None:
    entry = {"hash_type": "autov3", "hash": "CDCDCDCDCDCD", "category": "unsafe_code", "reason": "r"}
    for doc in ([entry], {"entries": [entry]}):
        path = tmp_path / "list.json"
        path.write_text(json.dumps(doc))
        bl = Blocklist.load(path)
        assert [e.category for e in bl.match(HASHES)] == ["unsafe_code"]  # a 12-digit AutoV3 prefix


def test_no_match_and_no_autov3_for_pickles(tmp_path: Path) -> None:
    bl = Blocklist.load(_csv(tmp_path, "hash_type,hash,category\nautov3,cdcdcdcdcdcd,x\n"))
    assert bl.match(FileHashes(SHA, SHA[:10], None)) == []
    assert bl.match(FileHashes("ef" * 32, "ef" * 5, "ef" * 32)) == []


@pytest.mark.parametrize("body, message", [
    ("hash,category\nabc,x\n", "missing: hash_type"),
    (f"hash_type,hash,category\nmd5,{SHA},x\n", ":2: hash_type 'md5'"),
    ("hash_type,hash,category\nsha256,abc,x\n", ":2: sha256 hash 'abc' must be 64 hex digits"),
    ("hash_type,hash,category\nautov2,zzzzzzzzzz,x\n", "must be 10 hex digits"),
    ("hash_type,hash,category\nautov3,abcd,x\n", "12 to 64 hex digits"),
    (f"hash_type,hash,category\n\n# c\nsha256,{SHA},Bad Category\n", ":4: category 'Bad Category'"),
    (f"hash_type,hash,category\nsha256,{SHA},x,extra\n", "quote cells"),
])
def test_malformed_csv_names_the_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(BlocklistError, match=message.replace("(", r"\(")):
        Blocklist.load(_csv(tmp_path, body))


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    for text, message in (("{", "not valid JSON"), ('{"x": 1}', "expected a list"),
                          ('[["sha256"]]', "entry 0: an entry must be an object"),
                          ('[{"hash_type": "sha256", "hash": 5, "category": "x"}]', "hash must be a string"),
                          ("[" * 100_000 + "]" * 100_000, "nested too deeply")):
        path.write_text(text)
        with pytest.raises(BlocklistError, match=message):
            Blocklist.load(path)


def test_combine_and_fingerprint(tmp_path: Path) -> None:
    a = Blocklist([BlocklistEntry("sha256", SHA, "x")], name="a")
    b = Blocklist([BlocklistEntry("autov2", SHA[:10], "y")], name="b")
    both = Blocklist.combine([a, b])
    assert len(both) == 2 and both.name == "a+b"
    assert both.fingerprint != a.fingerprint != Blocklist().fingerprint
    assert Blocklist.combine([b, a]).fingerprint == both.fingerprint  # order does not matter


def test_shipped_example_loads() -> None:
    bl = Blocklist.load(ROOT / "examples" / "blocklist.csv")
    assert {e.hash_type for e in bl.entries} == {"sha256", "autov2", "autov3"}
