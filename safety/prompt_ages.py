"""Ages written as numbers: "12 year old", "12yo", "twelve-year-old", "aged 12", "16~20 years old",
"12岁", "十二歲". An age under 18 is a minor cue; 18 and over an adult cue.

Works on the words of folded text (`prompt_normalize.Words`) and, for Chinese, on folded text
with one bounded regular expression. Linear in the prompt length.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .prompt_normalize import Words

ADULT_AGE = 18
_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
          "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
          "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TENS)
_MAX_DIGITS = 3
# Word sequences after a number that make it an age, and the age unit they imply.
_YEARS_AFTER = (("year", "old"), ("years", "old"), ("yr", "old"), ("yrs", "old"), ("year", "olds"),
                ("years", "of", "age"), ("yo",), ("y", "o"), ("yrs", "o"))
_MONTHS_AFTER = (("month", "old"), ("months", "old"), ("week", "old"), ("weeks", "old"))
_UNITS_BY_FIRST: dict[str, list[tuple[tuple[str, ...], bool]]] = {}
for _sequences, _is_months in ((_YEARS_AFTER, False), (_MONTHS_AFTER, True)):
    for _sequence in _sequences:
        _UNITS_BY_FIRST.setdefault(_sequence[0], []).append((_sequence, _is_months))
_AGE_BEFORE = ("aged", "age")
# Words without which no age expression is possible: a quick test before the word-by-word pass.
_TRIGGERS = frozenset(_UNITS_BY_FIRST) | frozenset(_AGE_BEFORE)
# "12yo", "12yrs", "12yearsold" written as one word.
_GLUED_AGE_RE = re.compile(r"(\d{1,3})(?:yo|yrs?|yrs?old|years?old|yearolds?)")
# "12y/o", "12y.o.": the number and "y" glued, then "o" as the next word.
_GLUED_Y_RE = re.compile(r"(\d{1,3})y")
_GLUED_AGE_SEARCH = re.compile(r"\dy")
# A range before the age ("16~20 years old", "16-18yo"): the lower end counts.
_RANGE_MARKS = frozenset("-~–")
# Chinese: a number (digits or numerals) then 岁 (歲/歳 fold to 岁), not preceded by another digit.
_CN_DIGITS = "零〇一二三四五六七八九十两"
_CN_AGE_RE = re.compile(f"(?<![0-9{_CN_DIGITS}百千])([0-9]{{1,3}}|[{_CN_DIGITS}]{{1,4}})\\s?(?:周岁|岁)")
_CN_VALUES = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}


class Age(NamedTuple):
    """An age found in folded text: its value in years and the folded span that says it."""

    years: int
    start: int
    end: int


def word_ages(words: Words) -> list[Age]:
    """Ages in the words of a folded text.

    Args:
        words (`Words`): the words of a folded text (`prompt_normalize.Words`).

    Returns:
        `list[Age]`: every age expression, in order.
    """
    texts, starts, ends = words.texts, words.starts, words.ends
    if _TRIGGERS.isdisjoint(texts) and not _GLUED_AGE_SEARCH.search(words.text):
        return []
    ages = []
    for index in [i for i, w in enumerate(texts) if w[0].isdigit() or w in _NUMBER_WORDS]:
        word = texts[index]
        glued = _GLUED_AGE_RE.fullmatch(word)
        if glued:
            first, years = _range_start(words, index, int(glued.group(1)))
            ages.append(Age(years, starts[first], ends[index]))
            continue
        glued = _GLUED_Y_RE.fullmatch(word)
        if glued and index + 1 < len(texts) and texts[index + 1] == "o":
            first, years = _range_start(words, index, int(glued.group(1)))
            ages.append(Age(years, starts[first], ends[index + 1]))
            continue
        value = _number(word)
        if value is None:
            continue
        first, years = _number_start(words, index, value)
        unit = _unit_end(texts, index)
        if unit is not None:
            last, is_months = unit
            ages.append(Age(0 if is_months else years, starts[first], ends[last]))
        elif first > 0 and texts[first - 1] in _AGE_BEFORE and not _is_decimal(words, index):
            # "age 12", but not "(Baroque age:1.3)": a decimal after "age" is a prompt weight.
            ages.append(Age(years, starts[first - 1], ends[index]))
    return ages


def chinese_ages(text: str) -> list[Age]:
    """Ages written with 岁 in folded `text` ("12岁", "十二岁", "两岁")."""
    if "岁" not in text:
        return []
    ages = []
    for match in _CN_AGE_RE.finditer(text):
        years = _chinese_number(match.group(1))
        if years is not None:
            ages.append(Age(years, match.start(), match.end()))
    return ages


def _is_decimal(words: Words, index: int) -> bool:
    """True when the number at `index` has a fractional part ("1.3")."""
    following = index + 1
    return following < len(words) and words.gaps[following] == "." and words.texts[following].isdigit()


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word) if len(word) <= _MAX_DIGITS else None
    return _UNITS.get(word, _TENS.get(word))


def _number_start(words: Words, index: int, value: int) -> tuple[int, int]:
    """Extend a number leftwards over "twenty-" (twenty-five) or a range start (16~20)."""
    before = words.texts[index - 1] if index else ""
    if value < 10 and before in _TENS:
        return index - 1, _TENS[before] + value
    return _range_start(words, index, value)


def _range_start(words: Words, index: int, value: int) -> tuple[int, int]:
    before = words.texts[index - 1] if index else ""
    if before.isdigit() and len(before) <= _MAX_DIGITS:
        gap = words.gaps[index].strip()
        if len(gap) == 1 and gap in _RANGE_MARKS:
            return index - 1, min(int(before), value)
    return index, value


def _unit_end(texts: list[str], index: int) -> tuple[int, bool] | None:
    """Index of the last word of "year old"/"yo"/"months old" after the number, and whether the
    unit is months or weeks (a baby); ``None`` when no unit follows."""
    following = texts[index + 1] if index + 1 < len(texts) else ""
    for sequence, is_months in _UNITS_BY_FIRST.get(following, ()):
        last = index + len(sequence)
        if last < len(texts) and all(texts[index + 1 + k] == w for k, w in enumerate(sequence)):
            return last, is_months
    return None


def _chinese_number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if "十" not in text:
        return _CN_VALUES[text] if len(text) == 1 else None
    tens, _, units = text.partition("十")
    if len(tens) > 1 or len(units) > 1 or "十" in units:
        return None
    return (_CN_VALUES[tens] if tens else 1) * 10 + (_CN_VALUES[units] if units else 0)
