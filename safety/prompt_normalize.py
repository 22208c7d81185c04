"""Text folding and word splitting for the lexical prompt guard.

`fold()` maps a prompt to the canonical form the term lists are written in, one character at a
time (so it is linear and keeps a map back to the original): zero-width/format characters and
combining marks are dropped, NFKC turns full-width, mathematical and circled letters into plain
ones, case and accents go, look-alike letters from Cyrillic/Greek become Latin, and traditional
Chinese becomes simplified. `Words` splits folded text into Latin words and glues letters that
were spaced out or split by punctuation ("n u d e", "n.u.d.e", "nu.de") back together.
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
from itertools import accumulate, chain, compress, groupby, repeat
from typing import NamedTuple

# Unicode categories removed outright: non-spacing and enclosing marks (accents, zalgo), format
# characters (zero-width space/joiners, soft hyphen, bidi controls, tag characters).
_DROP_CATEGORIES = frozenset({"Mn", "Me", "Cf"})
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
# Characters matched as CJK: kana, CJK ideographs (and extensions), half-width katakana.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
# A gap that may split CJK characters: 1-3 separators (not letters, digits or prompt syntax).
_CJK_GAP = r"(?:(?![:()\[\]{}<>|\n])[\W_]){1,%d}" % _MAX_SPACED_GAP
# Two or more single CJK characters, each set apart by a gap ("萝 莉", "小.女.孩"). The character
# class and the gap class are disjoint, so a failed match backs off at most one run: linear.
_CJK_SINGLES_RE = re.compile(f"(?<![{CJK_CLASS}])[{CJK_CLASS}](?:{_CJK_GAP}[{CJK_CLASS}])+(?![{CJK_CLASS}])")
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
    if unicodedata.category(ch) in _DROP_CATEGORIES:
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


def fold(text: str) -> Folded:
    """Fold `text` for matching, keeping the way back to original positions.

    Args:
        text (`str`): any text.

    Returns:
        `Folded`: ``.text`` is lower-case, NFKC, accent-free, zero-width-free, look-alikes mapped.

    Raises:
        `TypeError`: `text` is not a `str`.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    if text.isascii():
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
    return "".join(ch for ch, _ in groupby(word))


def has_long_run(word: str) -> bool:
    """True when some character repeats three or more times in a row (deliberate stretching)."""
    return any(len(list(run)) >= 3 for _, run in groupby(word))


class Word(NamedTuple):
    """A candidate word of folded text (glued from pieces): its letters and folded span.

    `letters` holds, for a word glued from spaced-out letters, the folded position of each letter
    (so a term found inside it gets an exact span); it is empty otherwise.
    """

    text: str
    start: int
    end: int
    letters: tuple[int, ...] = ()


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
        """
        texts, gaps = self.texts, self.gaps
        lengths = list(map(len, texts))
        if lengths.count(1) < MIN_SPACED_RUN:
            return []
        out: list[Word] = []
        run: list[int] = []
        for index in compress(range(len(texts)), map((1).__eq__, lengths)):
            if run and run[-1] == index - 1 and _is_spacing(gaps[index]):
                run.append(index)
                continue
            if len(run) >= MIN_SPACED_RUN:
                self._glue(run, out)
            run = [index]
        if len(run) >= MIN_SPACED_RUN:
            self._glue(run, out)
        return out

    def _glue(self, run: list[int], out: list[Word]) -> None:
        letters = "".join([self.texts[i] for i in run])
        if letters.isalpha() or sum(map(str.isalpha, letters)) >= _MIN_SPACED_LETTERS:
            out.append(Word(letters, self.starts[run[0]], self.ends[run[-1]],
                            tuple(self.starts[i] for i in run)))

    def joined_pairs(self) -> list[Word]:
        """Words split by one punctuation mark ("nu.de", "n-ude", "por_n"), rejoined pairwise.

        A mask character stands for a hidden letter ("n*de", "p*rn"): those pairs are also
        rejoined with each vowel in its place.
        """
        texts, gaps = self.texts, self.gaps
        if _JOINERS.isdisjoint(gaps):
            return []
        out = []
        for i in compress(range(len(gaps)), map(_JOINERS.__contains__, gaps)):
            if i == 0:
                continue
            left, right, start, end = texts[i - 1], texts[i], self.starts[i - 1], self.ends[i]
            out.append(Word(left + right, start, end))
            if gaps[i] in _MASKS:
                out.extend(Word(left + vowel + right, start, end) for vowel in _MASKED_LETTERS)
        return out


def cjk_spaced_runs(text: str, reach: int) -> list[Word]:
    """Runs of single CJK characters split by spaces or punctuation ("萝 莉", "小.女.孩"), glued.

    Two single characters in a row are enough (one CJK character is a word, unlike one Latin
    letter); words of two or more characters stay apart ("我们, 朋友" is ordinary text). The words
    right before and after a run join it, up to `reach` characters, so a term that ends or starts
    inside the run is found ("萝 莉色情" ... "一个小女孩 裸 体").

    Args:
        text (`str`): folded text.
        reach (`int`): how many characters of a neighbouring word may belong to a term (the
            longest CJK term less one).

    Returns:
        `list[Word]`: glued runs; ``letters`` holds each character's folded position.
    """
    out = []
    for match in _CJK_SINGLES_RE.finditer(text):
        start, end = match.span()
        before = _CJK_RUN_BEFORE_RE.search(text, max(0, start - reach - _MAX_SPACED_GAP), start)
        after = _CJK_RUN_AFTER_RE.match(text, end, end + reach + _MAX_SPACED_GAP)
        first = before.start() if before else start
        last = after.end() if after else end
        letters = tuple(m.start() for m in _CJK_CHAR_RE.finditer(text, first, last))  # drops the gaps
        out.append(Word("".join(map(text.__getitem__, letters)), first, last, letters))
    return out


def _is_spacing(gap: str) -> bool:
    return 0 < len(gap) <= _MAX_SPACED_GAP and not any(c.isalnum() or c in _RUN_BREAKS for c in gap)
