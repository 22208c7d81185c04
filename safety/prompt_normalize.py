"""Text folding and word splitting for the lexical prompt guard.

`fold()` maps a prompt to the canonical form the term lists are written in, one character at a time
(so it is linear and keeps a map back to the original): zero-width/format characters, control
characters and combining marks are dropped, NFKC turns full-width, mathematical and circled letters
into plain ones, case and accents go, look-alike letters from Cyrillic/Greek become Latin, and
traditional Chinese becomes simplified. `Words` splits folded text into Latin words and glues
letters that were spaced out or split by punctuation ("n u d e", "n.u.d.e", "nu.de") back together;
`cjk_spaced_runs()` does the same for single CJK characters ("萝 莉", "小.女.孩"). All of it is regular
expressions without backtracking and C-level list work, so 1 MB is a fraction of a second.
`deleet()` and `collapse()` undo digit/symbol substitutions ("s3x", "n00d") and repeated letters
("nuuuude").

Example:
    >>> f = fold("ｎ\u200bＵＤé")
    >>> f.text, f.span(0, 4)
    ('nude', (0, 5))
"""

from __future__ import annotations

import re
import unicodedata
from importlib import resources
from collections.abc import Callable
from bisect import bisect_left
from itertools import accumulate, chain, compress, islice, repeat
from operator import add
from typing import NamedTuple

# Unicode categories removed outright: non-spacing and enclosing marks (accents, zalgo), format
# characters (zero-width space/joiners, soft hyphen, bidi controls, tag characters), private-use
# and unassigned code points (a CLIP host without ftfy cleans text BERT-style, which deletes them,
# so "lo\ue000li" reaches the model as "loli").
_DROP_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Co", "Cn"})
# Control characters (category Cc) are dropped too, except these, which are ordinary whitespace.
# CLIP hosts delete controls before tokenizing (transformers' BERT-style cleaning deletes every
# Cc but these; ftfy deletes U+00-08, 0B, 0E-1F, 7F), so "lo\x00li" reaches the model as "loli".
_KEPT_CONTROLS = frozenset("\t\n\r")
# Controls the two cleanings read differently: ftfy keeps form feed as whitespace and turns NEL
# into a line break, BERT-style cleaning deletes both. Folded to a joiner, so the lexical guard
# reads both ways: as separate words and, rejoined, as one ("lo\x0cli", "12\x0cyear old").
_EITHER_CONTROLS = frozenset("\x0c\x85")
_EITHER_FOLD = "."
# ASCII controls that `fold` must not leave to its lower-casing fast path.
_ASCII_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Characters that render blank but are letters or symbols in Unicode: treat them as spaces.
_BLANKS = frozenset("\u3164\u115f\u1160\uffa0\u2800")
# Latin words: letters, digits, and the two symbols people substitute for letters ("@", "$").
WORD_RE = re.compile(r"[a-z0-9@$]+")
_SPLIT_RE = re.compile(f"({WORD_RE.pattern})")
# Digit/symbol substitutions, two readings of "1" (i and l).
_LEET_I = str.maketrans("0134578@$", "oieastbas")
_LEET_L = str.maketrans("0134578@$", "oleastbas")
_LEET_CHARS = frozenset("0134578@$")
# Spaced-out letters: at most this many separator characters between two single letters.
_MAX_SPACED_GAP = 3
# Prompt syntax between two single letters ends a spaced-out run ("(n.u.d.e:1.3)").
_RUN_BREAKS = frozenset(":()[]{}<>|\n")
# Fewer single letters in a row than this are ordinary text ("a b", "12 y o") ...
MIN_SPACED_RUN = 3
# ... and a run needs at least this many letters ("s 3 x" is a word; "1 2 3" is not).
_MIN_SPACED_LETTERS = 2
# A word split by punctuation ("nu.de", "n-ude") is rejoined across exactly one of these.
_JOINERS = frozenset(".-_*'~·|/+#")  # single characters, compared with whole gaps
# Joiners that usually hide a letter ("n*de"), and the letters they usually hide.
_MASKS = frozenset("*#")
_MASKED_LETTERS = "aeiou"
# Latin spaced-out runs: single letters set apart by 1-3 separators (not letters, digits, "@", "$"
# or prompt syntax). Letters and gaps are disjoint classes, so a failed match backs off at most
# one gap: the search is linear.
# The expression starts with a character class (the engine skips ahead to one), then checks the
# letter before it; "_" is turned into a space first (it is a word character to \W).
_LETTER = "[a-z0-9@$]"
_SPACED_GAP = r"[^\w:()\[\]{}<>|\n@$]{1,%d}" % _MAX_SPACED_GAP
_SPACED_RUN_RE = re.compile(
    f"{_LETTER}(?<!{_LETTER}{_LETTER})(?:{_SPACED_GAP}{_LETTER}(?!{_LETTER})){{{MIN_SPACED_RUN - 1},}}")
_NOT_ALPHA_RE = re.compile("[^a-z]")
# Characters matched as CJK: kana, CJK ideographs (and extensions), half-width katakana.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
# A gap that may split CJK characters: 1-3 separators (not letters, digits or prompt syntax).
_CJK_GAP = r"[^\w:()\[\]{}<>|\n]{1,%d}" % _MAX_SPACED_GAP  # "_" is made a space first
# Two or more single CJK characters, each set apart by a gap ("萝 莉", "小.女.孩"). The character
# class and the gap class are disjoint, so a failed match backs off at most one run: linear.
_CJK_SINGLES_RE = re.compile(
    f"[{CJK_CLASS}](?<![{CJK_CLASS}][{CJK_CLASS}])(?:{_CJK_GAP}[{CJK_CLASS}])+(?![{CJK_CLASS}])")
_CJK_GAP_RE = re.compile(_CJK_GAP)
_CJK_RUN_BEFORE_RE = re.compile(f"[{CJK_CLASS}]+{_CJK_GAP}$")
_CJK_RUN_AFTER_RE = re.compile(f"{_CJK_GAP}[{CJK_CLASS}]+")
_CJK_CHAR_RE = re.compile(f"[{CJK_CLASS}]")


def _read_pairs(name: str) -> dict[str, str]:
    """Read a `fold/` table: "source target" per line, `#` comments."""
    text = resources.files(__package__).joinpath("data", "terms", "fold", name).read_text("utf-8")
    pairs = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 1:
            raise ValueError(f"fold/{name}:{number}: expected 'character replacement', got {line!r}")
        pairs[parts[0]] = parts[1]
    return pairs


def _resolve_chains(table: dict[str, str]) -> dict[str, str]:
    """Make a one-step table out of one with chains (a→b, b→c gives a→c)."""
    resolved = {}
    for source, target in table.items():
        seen = {source}
        while len(target) == 1 and target in table and target not in seen:
            seen.add(target)
            target = table[target]
        resolved[source] = target
    return resolved


_CONFUSABLES = _read_pairs("confusables.txt")
_T2S = _resolve_chains(_read_pairs("t2s.txt"))


def _fold_char(ch: str) -> str:
    """The folded form of one character: "" (dropped), one character, or a few (ligatures)."""
    if ch in _BLANKS:
        return " "
    if ch in _EITHER_CONTROLS:
        return _EITHER_FOLD
    category = unicodedata.category(ch)
    if category in _DROP_CATEGORIES or (category == "Cc" and ch not in _KEPT_CONTROLS):
        return ""
    text = unicodedata.normalize("NFKC", ch)
    text = "".join(_CONFUSABLES.get(c, c) for c in text).lower()
    text = "".join(_CONFUSABLES.get(c, c) for c in text)
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    if len(bare) < len(decomposed):
        # Only take the decomposition when it stripped an accent: NFD would also split Hangul.
        text = bare
    text = "".join(_T2S.get(c, c) for c in text)
    return " " if text.isspace() else text


class _FoldTable(dict):
    """`str.translate` table filled on first sight of each character (C-speed afterwards).

    `non_unit` collects the characters that do not fold to exactly one character; a text without
    any of them folds position for position, so its spans need no map.
    """

    def __init__(self) -> None:
        super().__init__()
        self.non_unit: set[str] = set()

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        if len(folded) != 1:
            self.non_unit.add(chr(code))
        self[code] = folded
        return folded


_TABLE = _FoldTable()


class Folded:
    """A folded text and the way back to the original.

    Args:
        text (`str`): the folded text.
        original (`str`): what the user wrote.
        is_aligned (`bool`): folded position i is original position i (nothing was dropped or
            expanded); otherwise the map is built on the first `span()` call, so texts without
            hits never pay for it.
    """

    __slots__ = ("text", "original", "is_aligned", "_starts")

    def __init__(self, text: str, original: str, is_aligned: bool) -> None:
        self.text = text
        self.original = original
        self.is_aligned = is_aligned
        self._starts: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the folded span ``[start, end)`` (dropped characters inside count)."""
        if self.is_aligned:
            return (start, end)
        if self._starts is None:
            # Per folded character, the original index it came from (C-level iteration only).
            widths = map(len, map(_TABLE.__getitem__, map(ord, self.original)))
            self._starts = list(chain.from_iterable(map(repeat, range(len(self.original)), widths)))
        if end <= start:
            position = self._starts[start] if start < len(self._starts) else len(self.original)
            return (position, position)
        return (self._starts[start], self._starts[end - 1] + 1)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_lone_surrogates(text: str) -> str:
    """U+FFFD for each lone surrogate. A str can hold them (a JSON "\\ud800" escape, argv bytes
    that are not UTF-8), but no encoder, tokenizer or UTF-8 file takes them; replaced, the
    prompt is still checked and the words around them are still read."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def fold(text: str) -> Folded:
    """Fold `text` for matching, keeping the way back to original positions.

    Args:
        text (`str`): any text.

    Returns:
        `Folded`: ``.text`` is lower-case, NFKC, accent-free, zero-width- and control-free,
        look-alikes mapped.

    Raises:
        `TypeError`: `text` is not a `str`.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    if text.isascii() and _ASCII_CONTROL_RE.search(text) is None:
        return Folded(text.lower(), text, True)
    folded = text.translate(_TABLE)
    return Folded(folded, text, _TABLE.non_unit.isdisjoint(text))


def fold_term(term: str) -> str:
    """A list entry in the form prompts fold to (spaces squeezed)."""
    return " ".join(fold(term).text.split())


def deleet(word: str) -> tuple[str, ...]:
    """Readings of `word` with digit/symbol substitutions undone ("s3x" → "sex"); none for plain
    words or numbers (a word needs at least one letter to be a substitution)."""
    if word.isalpha() or _LEET_CHARS.isdisjoint(word) or not any(c.isalpha() for c in word):
        return ()
    first = word.translate(_LEET_I)
    second = word.translate(_LEET_L)
    return (first,) if first == second else (first, second)


def collapse(word: str) -> str:
    """`word` with every run of a repeated character shortened to one ("nuuuude" → "nude")."""
    return _REPEAT_RE.sub(r"\1", word)


def has_long_run(word: str) -> bool:
    """True when some character repeats three or more times in a row (deliberate stretching)."""
    return _LONG_RUN_RE.search(word) is not None


# One character and its repetitions (a back-reference to one character: no backtracking).
_REPEAT_RE = re.compile(r"(.)\1+", re.DOTALL)
_LONG_RUN_RE = re.compile(r"(.)\1\1", re.DOTALL)


class Word(NamedTuple):
    """A candidate word of folded text (glued from pieces): its letters and folded span.

    `spaced` marks a word glued from spaced-out letters: `Words.letter_positions` gives the
    position of each of its letters (computed only when a term is found inside it, so a term gets an exact span).
    """

    text: str
    start: int
    end: int
    spaced: bool = False


class Words:
    """The Latin words of a folded text, as parallel lists (prompts have many words; lists of
    strings and ints are far cheaper than an object per word).

    Args:
        text (`str`): the folded text.

    Attributes:
        texts (`list[str]`): the words, in order.
        starts, ends (`list[int]`): their folded spans.
        gaps (`list[str]`): ``gaps[i]`` is the text between word ``i - 1`` and word ``i``.
    """

    __slots__ = ("text", "texts", "starts", "ends", "gaps")

    def __init__(self, text: str) -> None:
        parts = _SPLIT_RE.split(text)
        bounds = list(accumulate(map(len, parts)))
        self.text = text
        self.texts: list[str] = parts[1::2]
        self.gaps: list[str] = parts[0:-1:2]
        self.starts: list[int] = bounds[0:-1:2]
        self.ends: list[int] = bounds[1::2]

    def __len__(self) -> int:
        return len(self.texts)

    def spaced_runs(self) -> list[Word]:
        """Runs of single letters ("n u d e", "n.u-d.e", "s 3 x") glued into one word each.

        Prompt syntax ends a run (":" "(" "[" "<" ...), so "(n.u.d.e:1.3)" gives "nude" and not
        "nude13"; a run needs `MIN_SPACED_RUN` characters, so "12 y o" and "a b" stay ordinary text.
        Found by one linear regular expression and glued from the word list (C-level slices).
        """
        # "_" is a separator here but a word character to the regular expression's \W.
        text = self.text.replace("_", " ") if "_" in self.text else self.text
        out = []
        starts, texts = self.starts, self.texts
        for match in _SPACED_RUN_RE.finditer(text):
            first = bisect_left(starts, match.start())
            letters = "".join(texts[first:bisect_left(starts, match.end(), first)])
            if letters.isalpha() or len(_NOT_ALPHA_RE.sub("", letters)) >= _MIN_SPACED_LETTERS:
                out.append(Word(letters, match.start(), match.end(), True))
        return out

    def letter_positions(self, word: Word) -> list[int]:
        """The folded position of each letter of a `spaced` word from `spaced_runs`."""
        first = bisect_left(self.starts, word.start)
        return self.starts[first:bisect_left(self.starts, word.end, first)]

    def joined_pairs(self, keep: Callable[[str], bool]) -> list[Word]:
        """Words split by one punctuation mark ("nu.de", "n-ude", "por_n"), rejoined pairwise.

        A mask character stands for a hidden letter ("n*de", "p*rn"): those pairs are also
        rejoined with each vowel in its place. Only the rejoined words that `keep` accepts are
        returned; `keep` is asked once per distinct word (a long text repeats its pairs), and the
        pairs are built with C-level iteration.
        """
        texts, gaps = self.texts, self.gaps
        if len(texts) < 2 or _JOINERS.isdisjoint(gaps):
            return []
        # gaps[i] lies between word i - 1 and word i.
        joined = list(map(add, texts, islice(texts, 1, None)))
        flags = list(map(_JOINERS.__contains__, islice(gaps, 1, None)))
        kept = {word for word in set(compress(joined, flags)) if keep(word)}
        masked = {}
        if not _MASKS.isdisjoint(gaps):
            for i in compress(range(len(joined)), map(_MASKS.__contains__, islice(gaps, 1, None))):
                masked.setdefault((texts[i], texts[i + 1]), []).append(i)
        out = []
        if kept:
            out.extend(Word(joined[i], self.starts[i], self.ends[i + 1])
                       for i in compress(range(len(joined)), flags) if joined[i] in kept)
        for (left, right), indices in masked.items():
            for word in [left + vowel + right for vowel in _MASKED_LETTERS if keep(left + vowel + right)]:
                out.extend(Word(word, self.starts[i], self.ends[i + 1]) for i in indices)
        return out


def cjk_spaced_runs(text: str, reach: int) -> list[Word]:
    """Runs of single CJK characters split by spaces or punctuation ("萝 莉", "小.女.孩"), glued.

    Two single characters in a row are enough (one CJK character is a word, unlike one Latin
    letter); words of two or more characters stay apart ("我们, 朋友" is ordinary text). The words
    right before and after a run join it, up to `reach` characters, so a term that ends or starts
    inside the run is found ("萝 莉 色情", "一个小女孩 裸 体").

    Args:
        text (`str`): folded text.
        reach (`int`): how many characters of a neighbouring word may belong to a term (the
            longest CJK term less one).

    Returns:
        `list[Word]`: glued runs (`spaced`; `cjk_positions` gives each character's position).
    """
    text = text.replace("_", " ") if "_" in text else text
    out = []
    for match in _CJK_SINGLES_RE.finditer(text):
        start, end = match.span()
        before = _CJK_RUN_BEFORE_RE.search(text, max(0, start - reach - _MAX_SPACED_GAP), start)
        after = _CJK_RUN_AFTER_RE.match(text, end, end + reach + _MAX_SPACED_GAP)
        first = before.start() if before else start
        last = after.end() if after else end
        out.append(Word(_CJK_GAP_RE.sub("", text[first:last]), first, last, True))
    return out


def cjk_positions(text: str, word: Word) -> list[int]:
    """The folded position of each character of a word from `cjk_spaced_runs`."""
    return [m.start() for m in _CJK_CHAR_RE.finditer(text, word.start, word.end)]
