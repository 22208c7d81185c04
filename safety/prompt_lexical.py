"""The lexical prompt guard: term lists, seen through obfuscation, turned into findings.

`Lexicon.scan` finds raw term hits (category, term, span in the original text) and applies no
policy; other stages (LoRA metadata) reuse it. `Lexicon.prompt_findings` applies the prompt-level
rules: sexual, suggestive and violence words in the negative prompt do not count (people write
"nsfw, nude" there), while adult words in the negative prompt ("adult, mature") are a minor cue.
The combinations (minor ∧ sexual → minor_sexual, real person ∧ sexual → real_person_sexual) are
applied afterwards by `verdict.decide`, once over every stage's findings.

Example:
    >>> lex = Lexicon.default()
    >>> [(h.category, h.term, h.span) for h in lex.scan("(n.u.d.e:1.3), <lora:loli_v2:0.8>")]
    [('sexual', 'nude', (1, 8)), ('minor', 'loli', (21, 25))]
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Union

from .errors import PolicyError
from .prompt_ages import ADULT_AGE, chinese_ages, word_ages
from .prompt_normalize import Folded, Word, Words, fold
from .prompt_terms import EXCEPTION, Entry, RawHit, TermIndex, bundled_entries, bundled_fingerprint, read_terms
from .verdict import Finding

if TYPE_CHECKING:
    from .policy import Policy

logger = logging.getLogger("sdguard.prompt")

SOURCE = "lexical"
# Hits that count in the negative prompt, and the category they become there.
_NEGATIVE_RULES = {"adult": "minor"}
# Categories that never become findings on their own in the positive prompt.
_PROMPT_IGNORED = frozenset({"adult"})
# camelCase word boundaries, one character into the match: "Loli|Nsfw", "NSFW|Art".
_CAMEL_RE = re.compile(r"[a-z][A-Z]|[A-Z][A-Z][a-z]")

# Host lists a policy may name in [lists]: (category, key).
_HOST_LISTS = (("real_person", "real_persons"), ("ip_character", "ip_characters"))

# A host list: a file (one name a line, `#` comments) or the names themselves.
TermSource = Union[str, "os.PathLike[str]", Iterable[str]]


class TermHit(NamedTuple):
    """One list entry found in a text.

    Args:
        category (`str`): ``sexual``, ``suggestive``, ``minor``, ``adult``, ``minor_sexual``,
            ``real_person``, ``ip_character`` or ``violence``.
        term (`str`): the entry as listed (``"12 year old"`` for ages).
        span (`tuple[int, int]`): ``[start, end)`` in the original text.
        field (`str`): where it was found (``"prompt"``, ``"negative"``, a metadata key).
    """

    # A named tuple rather than a dataclass: a long text can give 100,000s of hits.

    category: str
    term: str
    span: tuple[int, int]
    field: str


class Lexicon:
    """Compiled term lists: the bundled ones plus a host's real-person and IP-character lists.

    Build it with `Lexicon.default()` (cached) or `Lexicon.from_files(...)`; it never changes
    afterwards and is safe to share between threads.

    Args:
        index (`TermIndex`): the compiled lists.
    """

    _default: Lexicon | None = None
    _default_lock = threading.Lock()
    _for_policy: dict[tuple[tuple[str, str, int], ...], Lexicon] = {}

    def __init__(self, index: TermIndex, fingerprint: str) -> None:
        self._index = index
        #: Digest of every entry; caches of results that depend on the lists key on it.
        self.fingerprint = fingerprint

    @classmethod
    def default(cls) -> Lexicon:
        """The bundled lists, compiled once per process.

        Example:
            >>> Lexicon.default() is Lexicon.default()
            True
        """
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    entries = bundled_entries()
                    cls._default = cls(TermIndex(entries), bundled_fingerprint())
                    logger.debug("lexicon: %d bundled entries compiled", len(entries))
        return cls._default

    @classmethod
    def from_files(cls, *, real_persons: TermSource | None = None, ip_characters: TermSource | None = None,
                   extra_terms: Mapping[str, TermSource] | None = None) -> Lexicon:
        """The bundled lists plus host lists.

        Args:
            real_persons (`str | PathLike | Iterable[str]`, *optional*): names of real people, as a
                file (one a line, ``#`` comments) or the names themselves.
            ip_characters (`str | PathLike | Iterable[str]`, *optional*): protected characters.
            extra_terms (`Mapping[str, ...]`, *optional*): more entries per category
                (``{"sexual": ["..."], "exception": "allow.txt"}``).

        Returns:
            `Lexicon`

        Raises:
            `FileNotFoundError`: a list file does not exist.
            `PolicyError`: a list file is not UTF-8 text.
            `ValueError`: an unknown category or an entry that cannot match.

        Example:
            >>> lex = Lexicon.from_files(real_persons=["Jane Example"])
            >>> [h.category for h in lex.scan("jane example nude")]
            ['real_person', 'sexual']
        """
        lists = [("real_person", real_persons), ("ip_character", ip_characters), *(extra_terms or {}).items()]
        host = [(category, term) for category, source in lists if source is not None
                for term in _read_source(source)]
        entries = bundled_entries() + host
        logger.debug("lexicon: %d entries compiled (bundled and host lists)", len(entries))
        return cls(TermIndex(entries), _digest(host))

    @classmethod
    def for_policy(cls, policy: Policy) -> Lexicon:
        """The bundled lists plus the host lists the policy names in ``[lists]``, compiled once per
        set of files (and again when a file changes). Relative paths are resolved from the policy
        file's folder.

        Raises:
            `FileNotFoundError`: a list the policy names does not exist.
            `PolicyError`: a list the policy names is not UTF-8 text.
        """
        lists = policy.section("lists")
        folder = Path(policy.source).parent if not policy.source.startswith("builtin:") else Path.cwd()
        named = [(category, folder / lists[key]) for category, key in _HOST_LISTS if lists.get(key)]
        if not named:
            return cls.default()
        for _, path in named:
            if not path.is_file():
                raise FileNotFoundError(f"the policy's [lists] names {path}, which does not exist")
        key = tuple((category, str(path), path.stat().st_mtime_ns) for category, path in named)
        with cls._default_lock:
            lexicon = cls._for_policy.get(key)
        if lexicon is None:
            sources = {category: path for category, path in named}
            lexicon = cls.from_files(real_persons=sources.get("real_person"),
                                     ip_characters=sources.get("ip_character"))
            with cls._default_lock:
                cls._for_policy[key] = lexicon
        return lexicon

    def scan(self, text: str, field: str = "prompt") -> list[TermHit]:
        """Every list entry in `text`, seen through host syntax and obfuscation; no policy applied.

        Args:
            text (`str`): a prompt, negative prompt or metadata value.
            field (`str`, *optional*, defaults to ``"prompt"``): copied into each hit.

        Returns:
            `list[TermHit]`: in order of position; spans index the original `text`.

        Raises:
            `TypeError`: `text` is not a `str`.
        """
        folded = fold(text)
        raw = self._raw_hits(folded)
        if not raw:
            return []
        # By start, then longest first (two stable C-level sorts, not a Python key per hit).
        raw.sort(key=itemgetter(2), reverse=True)
        raw.sort(key=itemgetter(1))
        # A term found twice from one place (as a word and glued, or as a compound "nsfwart" and
        # a camelCase part "NSFW|Art") is one hit, the shortest (the last of the equal starts).
        raw = list(dict(zip(map(itemgetter(0, 1), raw), raw)).values())
        exceptions = [h for h in raw if h.entry.category == EXCEPTION]
        if not exceptions and folded.is_aligned:
            return [TermHit(entry.category, entry.term, (start, end), field) for entry, start, end in raw]
        hits = []
        covered = -1  # the furthest end of the exceptions that start at or before the current hit
        pending = iter(exceptions)
        upcoming = next(pending, None)
        for hit in raw:
            while upcoming is not None and upcoming.start <= hit.start:
                covered = max(covered, upcoming.end)
                upcoming = next(pending, None)
            if hit.entry.category == EXCEPTION or hit.end <= covered:
                continue
            hits.append(TermHit(hit.entry.category, hit.entry.term, folded.span(hit.start, hit.end), field))
        return hits

    def prompt_findings(self, prompt: str, negative: str, policy: Policy) -> list[Finding]:
        """Findings of the prompt stage for one prompt and its negative prompt.

        In the prompt every hit counts except adult words. In the negative prompt only adult
        words count, as a ``minor`` cue (asking the model to avoid adults). One finding per
        category and term (the first occurrence), so a huge prompt gives a short verdict.

        Args:
            prompt (`str`): the positive prompt.
            negative (`str`): the negative prompt (may be empty).
            policy (`Policy`): supplies the thresholds (``policy.threshold(category, "lexical")``).

        Returns:
            `list[Finding]`: cues and categories; `decide()` derives the combinations.
        """
        findings: list[Finding] = []
        seen: set[tuple[str, str, str]] = set()
        thresholds: dict[str, float] = {}

        def add(category: str, hit: TermHit, detail: str | None = None) -> None:
            if (category, hit.term, hit.field) in seen:
                return
            seen.add((category, hit.term, hit.field))
            if category not in thresholds:
                thresholds[category] = policy.threshold(category, SOURCE, 1.0)
            findings.append(Finding(category, 1.0, SOURCE, thresholds[category], term=hit.term,
                                    span=hit.span, field=hit.field, detail=detail))

        for hit in self.scan(prompt, "prompt"):
            if hit.category not in _PROMPT_IGNORED:
                add(hit.category, hit)
        if negative:
            for hit in self.scan(negative, "negative"):
                category = _NEGATIVE_RULES.get(hit.category)
                if category is not None:
                    add(category, hit, detail="adult word in the negative prompt")
        return findings

    def _raw_hits(self, folded: Folded) -> list[RawHit]:
        index = self._index
        text = folded.text
        found = Words(text)
        hits = index.match_words(found)
        candidates = found.spaced_runs() + found.joined_pairs(index.is_known)
        if folded.is_aligned and not folded.original.islower():
            candidates += _camel_parts(folded.original, found, index)
        if candidates:
            hits.extend(index.match_single(candidates, found))
        for age in word_ages(found):
            hits.append(_age_hit(age.years, age.start, age.end))
        if not text.isascii():
            hits.extend(index.match_cjk(text))
            for age in chinese_ages(text):
                hits.append(_age_hit(age.years, age.start, age.end, chinese=True))
        return hits


def _age_hit(years: int, start: int, end: int, chinese: bool = False) -> RawHit:
    category = "minor" if years < ADULT_AGE else "adult"
    term = f"{years}岁" if chinese else f"{years} year old"
    return RawHit(Entry(category, term), start, end)


def _camel_parts(original: str, found: Words, index: TermIndex) -> list[Word]:
    """The parts of unknown camelCase words ("MyLoliNsfw" → "my", "loli", "nsfw"); known words
    stay whole ("DiCaprio" when a list has it). Only for texts whose folding kept every position."""
    inside: dict[int, list[int]] = {}
    starts, ends = found.starts, found.ends
    for match in _CAMEL_RE.finditer(original):
        bound = match.start() + 1
        position = bisect_right(starts, bound) - 1
        if position >= 0 and starts[position] < bound < ends[position]:
            inside.setdefault(position, []).append(bound)
    out = []
    for position, bounds in inside.items():
        word = found.texts[position]
        if index.classify(word)[0] is None:
            edges = [starts[position], *bounds, ends[position]]
            out.extend(Word(word[a - edges[0]:b - edges[0]], a, b) for a, b in zip(edges, edges[1:]))
    return out


def _read_source(source: TermSource) -> list[str]:
    """Entries from a list file (str or PathLike) or an iterable of entries.

    Raises:
        `FileNotFoundError`: the file does not exist.
        `PolicyError`: the file is not UTF-8 text (the message names the file and byte offset).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"term list not found: {path}") from None
        bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
        try:
            text = raw[bom:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise PolicyError(f"term list is not UTF-8 text (invalid byte at offset {bom + e.start}); "
                              "save it as UTF-8", path=str(path)) from None
        return read_terms(text)
    return [str(term).strip() for term in source if str(term).strip()]


def _digest(host: Iterable[tuple[str, str]]) -> str:
    """The bundled lists' digest extended with the host entries (sorted: order does not matter)."""
    digest = hashlib.sha256(bundled_fingerprint().encode())
    for category, term in sorted(host):
        digest.update(f"{category}\x00{term}\x00".encode())
    return digest.hexdigest()[:16]
