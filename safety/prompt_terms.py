"""The term engine: term lists compiled into matchers over folded text.

Latin entries are matched word by word: every word of the prompt is mapped to a list word
(exactly, as a plural, with digit/symbol substitutions undone, or with stretched letters
collapsed), then multi-word entries are looked up by their first word. CJK entries are matched
as substrings with a trie walked from candidate positions, because Chinese and Japanese have no
spaces. Both are linear in the prompt length; nothing here uses a backtracking regular expression.

The engine knows nothing about prompts or policies: `prompt_lexical.Lexicon` builds one from the
bundled lists and host lists, and other stages (LoRA metadata) can reuse it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from itertools import compress, repeat
from operator import is_, is_not
from typing import Any, NamedTuple

from .prompt_normalize import (CJK_CLASS, WORD_RE, Word, Words, cjk_positions, cjk_spaced_runs, collapse, deleet,
                               fold_term, has_long_run)

# Categories a list entry may have. "exception" entries suppress hits inside them.
CATEGORIES = ("sexual", "suggestive", "minor", "adult", "minor_sexual", "violence",
              "real_person", "ip_character")
EXCEPTION = "exception"
# Prefix entries ("porn*") need this many letters, so they cannot swallow ordinary words.
MIN_PREFIX = 4
# Multi-word entries also match written as one word ("child porn" → "childporn") from this length.
MIN_GLUED = 6
# Entries searched inside words glued from spaced-out letters need this many letters.
MIN_INFIX = 4
# Longer words are classified but not memoised (a 1 MB "word" must not stay in memory).
_MAX_CACHED_WORD = 64
# Stretched words ("nuude") are only collapsed onto list words of at least this length, unless a
# letter repeats three times ("seeex"): short collapses ("kidd" → "kid") hit real names.
MIN_COLLAPSED = 4
_CJK_RE = re.compile(f"[{CJK_CLASS}]")
_NAME_DOTS = "·・"
# Trie key that marks the end of a pattern (not a character, so it never matches text).
_END = 0
# What `TermIndex.classify` says about a word no entry uses.
_NOTHING: tuple[str | None, tuple[Entry, ...]] = (None, ())
# `TermTrie.find` searches long texts in windows of this many starting positions ...
_WINDOW = 256
# ... and remembers this many distinct windows (bounds its memory on long, varied texts).
_MAX_WINDOWS_REMEMBERED = 4096
# Glued compounds ("nudegirl", "lolinude"): a word that is no entry is split into a listed word of
# these categories, of at least `MIN_INFIX` letters, and either another such word or one of the
# common prompt words below. Longer words are not split (no compound of two parts is longer).
_COMPOUND_CATEGORIES = frozenset({"sexual", "suggestive", "minor", "minor_sexual"})
_COMPOUND_WORDS = frozenset(
    "girl girls woman women boy boys man men lady ladies body bodies art pic pics photo photos "
    "model models selfie selfies pose poses anime waifu wife babe babes chick chicks".split())
_MAX_COMPOUND = 24
# Words remembered by `TermIndex.classify` before the memo starts over (bounds its memory).
_CACHE_SIZE = 1 << 16


class Entry(NamedTuple):
    """One list entry: its category and the term as listed (shown in verdicts)."""

    category: str
    term: str


class RawHit(NamedTuple):
    """A hit in folded coordinates."""

    entry: Entry
    start: int
    end: int


class TermTrie:
    """Multi-pattern substring search: a trie walked from each position where a pattern can start.

    Candidate positions are found by one regular-expression character class (C speed, no
    backtracking), and each walk stops after the longest pattern, so the search is linear in the
    text length times a constant (the longest pattern, a handful of characters).

    Args:
        patterns (`Iterable[tuple[str, Entry]]`): (pattern, value) pairs; a pattern may repeat.

    Example:
        >>> trie = TermTrie([("he", Entry("x", "he")), ("she", Entry("x", "she"))])
        >>> [(s, e) for s, e, _ in trie.find("ushers")]
        [(1, 4), (2, 4)]
    """

    def __init__(self, patterns: Iterable[tuple[str, Entry]]) -> None:
        root: dict[Any, Any] = {}
        self._longest = 0
        for pattern, value in patterns:
            if not pattern:
                continue
            node = root
            for ch in pattern:
                node = node.setdefault(ch, {})
            node.setdefault(_END, []).append(value)
            self._longest = max(self._longest, len(pattern))
        self._root = root
        singles = "".join(sorted(re.escape(ch) for ch, node in root.items() if _END in node))
        firsts = "".join(sorted(re.escape(ch) for ch, node in root.items() if len(node) > (_END in node)))
        seconds = "".join(sorted({re.escape(ch) for node in root.values() for ch in node if ch != _END}))
        # One-character patterns are found by a character class; longer ones start where both the
        # first and the second character can begin a pattern (far fewer, surer candidates).
        self._singles = re.compile(f"[{singles}]") if singles else None
        self._starts = re.compile(f"(?=[{firsts}][{seconds}])") if firsts else None

    def __bool__(self) -> bool:
        return self._starts is not None or self._singles is not None

    @property
    def longest(self) -> int:
        """The length of the longest pattern."""
        return self._longest

    def find(self, text: str) -> Iterator[tuple[int, int, Entry]]:
        """Yield ``(start, end, value)`` for every occurrence (overlapping ones included).

        A long text is searched in windows of `_WINDOW` starting positions, each window text
        searched once: repetitive input ("aaaa...", "nudenude...") costs one window, not its length.
        """
        if len(text) <= 2 * _WINDOW:
            yield from self._find(text)
            return
        seen: dict[str, list[tuple[int, int, Entry]]] = {}
        overlap = self._longest - 1
        for offset in range(0, len(text), _WINDOW):
            chunk = text[offset:offset + _WINDOW + overlap]
            found = seen.get(chunk)
            if found is None:
                found = [hit for hit in self._find(chunk) if hit[0] < _WINDOW]
                if len(seen) < _MAX_WINDOWS_REMEMBERED:
                    seen[chunk] = found
            for start, end, value in found:
                yield offset + start, offset + end, value

    def _find(self, text: str) -> Iterator[tuple[int, int, Entry]]:
        root, longest = self._root, self._longest
        if self._singles is not None:
            for match in self._singles.finditer(text):
                start = match.start()
                for value in root[text[start]][_END]:
                    yield start, start + 1, value
        if self._starts is None:
            return
        for match in self._starts.finditer(text):
            start = match.start()
            node = root[text[start]]
            for end, ch in enumerate(text[start + 1:start + longest], start + 2):
                node = node.get(ch)
                if node is None:
                    break
                for value in node.get(_END, ()):
                    yield start, end, value


class TermIndex:
    """Compiled term lists.

    Args:
        entries (`Iterable[tuple[str, str]]`): (category, term) pairs; ``term*`` is a prefix entry.

    Raises:
        `ValueError`: an unknown category, or a term that folds to nothing or to a too short prefix.
    """

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._phrases: dict[str, list[tuple[tuple[str, ...], Entry]]] = {}
        self._prefixes: dict[str, list[Entry]] = {}
        cjk: list[tuple[str, Entry]] = []
        seen: set[tuple[str, str, bool]] = set()
        for category, term in entries:
            if category not in CATEGORIES and category != EXCEPTION:
                raise ValueError(f"unknown term category {category!r} (known: {', '.join(CATEGORIES)}, "
                                 f"{EXCEPTION})")
            term = term.strip()
            is_prefix = term.endswith("*")
            key = fold_term(term.rstrip("*"))
            if not key or (category, key, is_prefix) in seen:
                continue
            seen.add((category, key, is_prefix))
            entry = Entry(category, term.rstrip("*"))
            if _CJK_RE.search(key):
                cjk.extend((variant, entry) for variant in _cjk_variants(key))
            elif is_prefix:
                self._add_prefix(key, entry)
            else:
                self._add_phrase(key, entry)
        self._cjk = TermTrie(cjk)
        self._infixes = TermTrie(
            [(head, entry) for head, items in self._phrases.items() for rest, entry in items
             if not rest and len(head) >= MIN_INFIX and entry.category != EXCEPTION]
            + [(prefix, entry) for prefix, entries in self._prefixes.items() for entry in entries])
        vocab = set(self._phrases)
        vocab.update(w for items in self._phrases.values() for rest, _ in items for w in rest)
        self._lookup = {w: w for w in vocab}
        for word in vocab:
            for suffix in ("s", "es"):
                self._lookup.setdefault(word + suffix, word)
        self._collapsed: dict[str, str] = {}
        for word in sorted(vocab):
            self._collapsed.setdefault(collapse(word), word)
        self._prefix_heads = {p[:MIN_PREFIX] for p in self._prefixes}
        self._prefix_lengths = sorted({len(p) for p in self._prefixes})
        for items in self._phrases.values():
            items.sort(key=lambda item: -len(item[0]))
        # The phrases again, split for `match_words`: one-word entries per word, and longer
        # entries per first word and then second word (a hit tests only the entries that fit).
        self._whole: dict[str, tuple[Entry, ...]] = {}
        self._longer: dict[str, dict[str, list[tuple[tuple[str, ...], Entry]]]] = {}
        for head, items in self._phrases.items():
            singles = tuple(entry for rest, entry in items if not rest)
            if singles:
                self._whole[head] = singles
            for rest, entry in items:
                if rest:
                    self._longer.setdefault(head, {}).setdefault(rest[0], []).append((rest, entry))
        self._cache: dict[str, tuple[str | None, tuple[Entry, ...]]] = {}

    def _add_phrase(self, key: str, entry: Entry) -> None:
        parts = tuple(WORD_RE.findall(key))
        if not parts:
            raise ValueError(f"term {entry.term!r} ({entry.category}) has no letters to match")
        self._phrases.setdefault(parts[0], []).append((parts[1:], entry))
        glued = "".join(parts)
        if len(parts) > 1 and len(glued) >= MIN_GLUED:
            self._phrases.setdefault(glued, []).append(((), entry))

    def _add_prefix(self, key: str, entry: Entry) -> None:
        if not WORD_RE.fullmatch(key) or len(key) < MIN_PREFIX:
            raise ValueError(f"prefix term {entry.term!r} must be one word of at least {MIN_PREFIX} "
                             "letters")
        self._prefixes.setdefault(key, []).append(entry)

    def classify(self, word: str) -> tuple[str | None, tuple[Entry, ...]]:
        """`canonical(word)` and `prefix_entries(word)`, memoised: prompts repeat their words."""
        found = self._cache.get(word)
        if found is None:
            found = (self.canonical(word), tuple(self.prefix_entries(word)))
            if found == _NOTHING:
                found = (None, self.compound_entries(word))
            if found == _NOTHING:
                found = _NOTHING  # one shared object, so match_words can skip by identity
            if len(word) <= _MAX_CACHED_WORD:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[word] = found
        return found

    def is_known(self, word: str) -> bool:
        """True when `word` stands for a list word or starts with a prefix entry."""
        return self.classify(word) is not _NOTHING

    def canonical(self, word: str) -> str | None:
        """The list word that `word` stands for, or ``None``.

        Tries the word itself and its plural-less form, then digit/symbol readings ("s3x"), then
        the word with stretched letters collapsed ("nuuuude").
        """
        found = self._lookup.get(word)
        if found is not None:
            return found
        for reading in deleet(word):
            found = self._lookup.get(reading)
            if found is not None:
                return found
        short = collapse(word)
        if short == word:
            return None
        stretched = has_long_run(word)
        if stretched or len(short) >= MIN_COLLAPSED:
            found = self._collapsed.get(short)
        if found is None and stretched and short.endswith("s"):
            found = self._collapsed.get(short[:-1])
        return found

    def compound_entries(self, word: str) -> tuple[Entry, ...]:
        """Entries of a word glued from a listed word and a common prompt word or another listed
        word ("nudegirl", "sexywoman", "lolinude"); none for real words ("sexton", "analyst",
        "cocktail": their other part is no common prompt word)."""
        if len(word) > _MAX_COMPOUND or len(word) < 2 * MIN_INFIX - 1 or not word.isalpha():
            return ()
        for cut in range(3, len(word) - 2):
            left, right = word[:cut], word[cut:]
            found = self._compound_part(left), self._compound_part(right)
            if found[0] and found[1]:
                return found[0] + found[1]
            if (found[0] and right in _COMPOUND_WORDS) or (found[1] and left in _COMPOUND_WORDS):
                return found[0] or found[1]
        return ()

    def _compound_part(self, part: str) -> tuple[Entry, ...]:
        head = self._lookup.get(part)
        if head is None or len(head) < MIN_INFIX:
            return ()
        return tuple(e for e in self._whole.get(head, ()) if e.category in _COMPOUND_CATEGORIES)

    def prefix_entries(self, word: str) -> list[Entry]:
        """Entries of prefix terms that `word` (or a digit/symbol reading of it) starts with."""
        for reading in (word, *deleet(word)):
            if reading[:MIN_PREFIX] not in self._prefix_heads:
                continue
            for length in self._prefix_lengths:
                if length > len(reading):
                    break
                found = self._prefixes.get(reading[:length])
                if found:
                    return found
        return []

    def match_words(self, words: Words) -> list[RawHit]:
        """Hits of Latin entries over a text's consecutive words."""
        texts, starts, ends = words.texts, words.starts, words.ends
        count = len(texts)
        infos = list(map(self._cache.get, texts))
        if None in infos:
            unknown = set(compress(texts, map(is_, infos, repeat(None))))
            fresh = {word: self.classify(word) for word in unknown}
            infos = list(map(fresh.get, texts, infos))
        # Most words are in no entry: pick the others, then handle each distinct word's
        # occurrences together, building the hits with C-level iteration (a text can repeat a
        # listed word 100,000 times).
        hot = list(compress(range(count), map(is_not, infos, repeat(_NOTHING))))
        hot_infos = list(map(infos.__getitem__, hot))
        hits: list[RawHit] = []
        for info in dict.fromkeys(hot_infos):
            head, prefixed = info
            where = list(compress(hot, map(is_, hot_infos, repeat(info))))
            found = (*prefixed, *self._whole.get(head, ()))
            for entry in found:
                hits.extend(map(RawHit, repeat(entry), map(starts.__getitem__, where), map(ends.__getitem__, where)))
            following = self._longer.get(head)
            if following is None:
                continue
            for index in where:
                if index + 1 < count:
                    # Only the entries whose second word is the next word.
                    for rest, entry in following.get(infos[index + 1][0], ()):
                        last = index + len(rest)
                        if last < count and all(infos[index + 1 + k][0] == w for k, w in enumerate(rest)):
                            hits.append(RawHit(entry, starts[index], ends[last]))
        return hits

    def match_single(self, candidates: list[Word], words: Words) -> list[RawHit]:
        """Hits of one-word entries on glued candidate words ("n u d e" → "nude").

        A word glued from spaced-out letters that is no entry as a whole is also searched inside
        for entries of `MIN_INFIX` letters or more ("s e x y g i r l" → "sexy"), so short entries
        cannot fire inside ordinary spelled-out words ("a s s e m b l e"). Each distinct word is
        searched once (long texts repeat their runs).

        Args:
            candidates (`list[Word]`): glued words of `text`.
            words (`Words`): the words of the folded text (give the letters of spaced words).
        """
        hits = []
        inside: dict[str, list[tuple[int, int, Entry]]] = {}
        for word in candidates:
            head, prefixed = self.classify(word.text)
            hits.extend(RawHit(e, word.start, word.end) for e in prefixed)
            whole = [RawHit(entry, word.start, word.end)
                     for rest, entry in self._phrases.get(head, ()) if head is not None and not rest]
            hits.extend(whole)
            if word.spaced and not whole and not prefixed:
                found = inside.get(word.text)
                if found is None:
                    # One hit per entry and run: a run is one spelled-out word, and a 1 MB run
                    # ("n u d e n u d e ...") would otherwise give 100,000s of identical findings.
                    found = inside[word.text] = list({hit[2]: hit for hit in reversed(list(
                        self._infixes.find(word.text)))}.values())
                if found:
                    letters = words.letter_positions(word)
                    hits.extend(RawHit(entry, letters[start], letters[end - 1] + 1) for start, end, entry in found)
        return hits

    def match_cjk(self, text: str) -> list[RawHit]:
        """Hits of CJK entries in folded `text` (substrings: CJK has no spaces between words)."""
        hits = [RawHit(entry, start, end) for start, end, entry in self._cjk.find(text)]
        if self._cjk:
            hits.extend(self._match_cjk_spaced(text))
        return hits

    def _match_cjk_spaced(self, text: str) -> list[RawHit]:
        """Hits of CJK entries spelled out with gaps ("萝 莉", "小.女.孩"); only those that cross a
        gap (the others were found in the text as it is)."""
        hits = []
        inside: dict[str, list[tuple[int, int, Entry]]] = {}
        for word in cjk_spaced_runs(text, self._cjk.longest - 1):
            found = inside.get(word.text)
            if found is None:
                found = inside[word.text] = list(self._cjk.find(word.text))
            if not found:
                continue
            letters = cjk_positions(text, word)
            for start, end, entry in found:
                first, last = letters[start], letters[end - 1]
                if last - first != end - 1 - start:
                    hits.append(RawHit(entry, first, last + 1))
        return hits


def _cjk_variants(key: str) -> list[str]:
    """A CJK entry as written (spaces removed) and, for names, without the name dot."""
    compact = "".join(key.split())
    bare = "".join(c for c in compact if c not in _NAME_DOTS)
    return [compact] if bare == compact else [compact, bare]


def bundled_entries() -> list[tuple[str, str]]:
    """(category, term) pairs from the term lists shipped in ``data/terms/``."""
    folder = resources.files(__package__).joinpath("data", "terms")
    entries = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".txt"):
            category = item.name.split(".", 1)[0]
            entries.extend((category, term) for term in read_terms(item.read_text("utf-8")))
    return entries


def read_terms(text: str) -> list[str]:
    """Entries of a term list: one per line, ``#`` starts a comment, blank lines skipped."""
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


@functools.lru_cache(maxsize=1)
def bundled_fingerprint() -> str:
    """Digest of the bundled term lists and folding tables (and sdguard's version, for the matching code)."""
    from . import __version__

    digest = hashlib.sha256(__version__.encode())
    pending = [resources.files(__package__).joinpath("data", "terms")]
    while pending:
        folder = pending.pop()
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir(), key=lambda t: t.name):
            if item.is_dir():
                pending.append(item)
            else:
                digest.update(item.name.encode() + b"\x00" + item.read_bytes())
    return digest.hexdigest()[:16]
