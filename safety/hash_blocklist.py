"""Hash blocklists a host maintains: files whose identity alone decides.

A list is CSV (a header row naming the columns) or JSON (a list of objects, or ``{"entries": [...]}``)
with these fields per entry:

- ``hash_type``: ``sha256`` (64 hex), ``autov2`` (10 hex) or ``autov3`` (12 to 64 hex; Civitai shows
  the first 12, a prefix matches).
- ``hash``: hex digits, any case (compared lowercase).
- ``category``: why it is listed, e.g. ``minor_sexual``, ``real_person``, ``unsafe_code``.
- ``reason`` (optional): one line for the moderator.
- ``source`` (optional): who decided (a moderator, a ticket, a list's name).

Lines of a CSV whose first cell starts with ``#`` are comments. A listed file blocks in every
profile: `model_guard` turns a match into a ``blocked_hash`` finding, a category that blocks.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _json
from .errors import SdguardError
from .model_hashes import FileHashes

HASH_TYPES = ("sha256", "autov2", "autov3")
FIELDS = ("hash_type", "hash", "category", "reason", "source")
_REQUIRED = ("hash_type", "hash", "category")
_HEX_LENGTHS = {"sha256": (64, 64), "autov2": (10, 10), "autov3": (12, 64)}
_HEX = re.compile(r"[0-9a-f]+")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A blocklist is data a host curates; refuse anything absurd before parsing it.
MAX_LIST_BYTES = 64 << 20


class BlocklistError(SdguardError, ValueError):
    """A blocklist file is malformed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class BlocklistEntry:
    """One listed hash (lowercase hex)."""

    hash_type: str
    hash: str
    category: str
    reason: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FIELDS}


class Blocklist:
    """Entries from one or more lists, indexed for look-up by `FileHashes`.

    Example:
        >>> bl = Blocklist.load("blocklist.csv")  # doctest: +SKIP
        >>> [e.category for e in bl.match(hashes)]  # doctest: +SKIP
        ['minor_sexual']
    """

    def __init__(self, entries: Iterable[BlocklistEntry] = (), name: str = "blocklist"):
        self.name = name
        self.entries = tuple(entries)
        self._exact: dict[tuple[str, str], list[BlocklistEntry]] = {}
        self._v3_prefixes: dict[str, list[BlocklistEntry]] = {}
        for entry in self.entries:
            if entry.hash_type == "autov3":
                self._v3_prefixes.setdefault(entry.hash, []).append(entry)
            else:
                self._exact.setdefault((entry.hash_type, entry.hash), []).append(entry)
        canonical = "\n".join(sorted(",".join(e.to_dict().values()) for e in self.entries))
        self.fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Blocklist:
        """Read a CSV or JSON list (by extension; ``.json`` is JSON, anything else CSV).

        Raises:
            `BlocklistError`: malformed list (file and line in the message).
            `OSError`: the file cannot be read.
        """
        path = Path(path)
        if path.stat().st_size > MAX_LIST_BYTES:
            raise BlocklistError(f"{path}: larger than {MAX_LIST_BYTES} bytes; split the list")
        try:
            text = path.read_text("utf-8-sig")
        except UnicodeDecodeError as e:
            raise BlocklistError(f"{path}: not UTF-8 text (byte {e.start})") from None
        rows = _json_rows(text, path) if path.suffix.lower() == ".json" else _csv_rows(text, path)
        return cls((_entry(row, f"{path}:{where}") for where, row in rows), name=path.name)

    @classmethod
    def combine(cls, lists: Iterable[Blocklist]) -> Blocklist:
        lists = list(lists)
        return cls((e for bl in lists for e in bl.entries), name="+".join(bl.name for bl in lists))

    def match(self, hashes: FileHashes) -> list[BlocklistEntry]:
        """Entries that list this file, by any of its hashes."""
        found = list(self._exact.get(("sha256", hashes.sha256.lower()), ()))
        found += self._exact.get(("autov2", hashes.autov2.lower()), ())
        if hashes.autov3:
            v3 = hashes.autov3.lower()
            for length in range(_HEX_LENGTHS["autov3"][0], len(v3) + 1):
                found += self._v3_prefixes.get(v3[:length], ())
        return found


def _csv_rows(text: str, path: Path) -> list[tuple[int, Mapping[str, Any]]]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    try:
        # One line per row, so every error names its real line (multi-line cells are not supported).
        table = [next(csv.reader([line])) for _, line in lines]
    except csv.Error as e:
        raise BlocklistError(f"{path}: not valid CSV ({e})") from None
    header = [cell.strip().lower() for cell in table[0]]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise BlocklistError(f"{path}:{lines[0][0]}: the header row must name the columns "
                             f"{', '.join(FIELDS)} (missing: {', '.join(missing)})")
    rows = []
    for (n, _), cells in zip(lines[1:], table[1:], strict=True):
        if len(cells) > len(header):
            raise BlocklistError(f"{path}:{n}: {len(cells)} cells but the header names {len(header)} "
                                 f"(quote cells that contain commas)")
        rows.append((n, dict(zip(header, cells, strict=False))))  # short rows leave optional columns empty
    return rows


def _json_rows(text: str, path: Path) -> list[tuple[int | str, Mapping[str, Any]]]:
    try:
        doc = _json.loads(text)
    except ValueError as e:
        raise BlocklistError(f"{path}: not valid JSON ({e})") from None
    if isinstance(doc, Mapping):
        doc = doc.get("entries")
    if not isinstance(doc, list):
        raise BlocklistError(f"{path}: expected a list of entries or an object with 'entries'")
    return [(f"entry {i}", row) for i, row in enumerate(doc)]


def _entry(row: Any, where: str) -> BlocklistEntry:
    if not isinstance(row, Mapping):
        raise BlocklistError(f"{where}: an entry must be an object with {', '.join(FIELDS)}")
    values = {}
    for name in FIELDS:
        value = row.get(name, "")
        if not isinstance(value, str):
            raise BlocklistError(f"{where}: {name} must be a string")
        values[name] = value.strip()
    hash_type, digest, category = values["hash_type"].lower(), values["hash"].lower(), values["category"]
    if hash_type not in HASH_TYPES:
        raise BlocklistError(f"{where}: hash_type {values['hash_type']!r} is not one of {', '.join(HASH_TYPES)}")
    low, high = _HEX_LENGTHS[hash_type]
    if not _HEX.fullmatch(digest) or not low <= len(digest) <= high:
        size = str(low) if low == high else f"{low} to {high}"
        raise BlocklistError(f"{where}: {hash_type} hash {values['hash']!r} must be {size} hex digits")
    if not _CATEGORY.fullmatch(category):
        raise BlocklistError(f"{where}: category {category!r} must be a snake_case name such as minor_sexual")
    return BlocklistEntry(hash_type, digest, category, values["reason"], values["source"])
