"""Screening a model's metadata with the prompt stage's term engine: names, descriptions and the
training tags, weighed by how many training images carry them.

Text fields (the file name and every ``__metadata__`` value, with the dataset folder names of
``ss_dataset_dirs`` in place of its JSON) give one lexical finding per term, like a prompt. The training tags in
kohya's ``ss_tag_frequency`` give one finding per category whose score is the *share* of training
images tagged with that category's terms, judged against the policy's ``tag_share`` threshold:
one stray tag among 5,000 images is noise; a tag on a tenth of them is what the model learned.
Protected combinations (minor ∧ sexual, real person ∧ sexual) do not depend on shares, which the
same file can dilute: cue tags each on at least `MIN_COMBO_IMAGES` images derive them directly.
Counts that are not non-negative integers, or tag/folder JSON that does not parse, are errors
(the file blocks as malformed), and the unparsed text is still screened as plain text.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .policy import Policy
from .verdict import Finding

TAG_KEY = "ss_tag_frequency"
DIRS_KEY = "ss_dataset_dirs"
IMAGES_KEY = "ss_num_train_images"
# Other dataset descriptions kohya writes as JSON: one that does not parse has been tampered with.
JSON_KEYS = ("ss_datasets", "ss_reg_dataset_dirs")
FILE_NAME_FIELD = "file_name"
KEYS_FIELD = "__metadata__ keys"  # the metadata's key names are attacker-chosen text too
LEXICAL = "lexical"
TAG_SHARE = "tag_share"
# The prompt stage's "adult" hits only soften minor cues in a negative prompt; they are no
# evidence about a model.
CUE_ONLY = frozenset({"adult"})
# A category without a tag_share threshold fires only when every training image carries it.
DEFAULT_TAG_SHARE = 1.0
# ss_num_train_images longer than this is no real count (int() of a huge string is also slow).
MAX_COUNT_DIGITS = 18
# A protected combination (minor_sexual, real_person_sexual) fires from the training tags when
# each of its cue categories is on at least this many images, whatever the share: every image count
# in the metadata can be inflated by the same file, and a LoRA trained on 40 'loli' and 50 'nude'
# images is a minor∧sexual LoRA however many other images it claims.
MIN_COMBO_IMAGES = 3
TAG_COUNT = "tag_count"
# Tags quoted per finding in its detail.
TAGS_PER_FINDING = 5
_COUNT = operator.itemgetter(1)
_TAG_SEPARATOR = "\n"  # between tags when screened as one text, so no term spans two tags


class TermHitLike(Protocol):
    category: str
    term: str
    span: tuple[int, int]
    field: str


class TermScanner(Protocol):
    """The prompt stage's `Lexicon`: ``scan(text, field) -> list[TermHit]``."""

    def scan(self, text: str, field: str) -> Sequence[TermHitLike]: ...


@dataclass(frozen=True)
class TagStats:
    """Training tags merged over dataset folders.

    Args:
        counts (`dict[str, int]`): images per tag (lowercased), most frequent first.
        images (`int`): training images the shares are computed against (0 when unknown).
        basis (`str`): where `images` came from: ``ss_dataset_dirs``, ``ss_num_train_images``,
            ``max tag count`` or ``tag total`` (a claimed count capped at what the tags support).
        error (`str`, *optional*): why ``ss_tag_frequency``, ``ss_dataset_dirs``,
            ``ss_num_train_images`` or a `JSON_KEYS` value could not be read; the file then blocks
            as malformed.
        unparsed (`tuple[str, ...]`): the metadata keys that failed to parse; their raw text is
            screened as plain text instead.
    """

    counts: dict[str, int] = field(default_factory=dict)
    images: int = 0
    basis: str = ""
    error: str | None = None
    unparsed: tuple[str, ...] = ()

    def top(self, n: int) -> list[tuple[str, int]]:
        return list(itertools.islice(self.counts.items(), n))


def tag_stats(metadata: Mapping[str, str]) -> TagStats:
    """Parse kohya's ``ss_tag_frequency`` (``{folder: {tag: count}}`` as a JSON string) and the
    image count it should be weighed against.

    Every count must be a non-negative integer; anything else is an error (the file blocks as
    malformed), never a silently empty result. The image count is the claimed one, raised to the
    largest tag count and capped at the sum of all tag counts (an image carries at least one tag
    occurrence), so a claimed count cannot dilute the shares beyond what the tags themselves say.
    """
    errors: dict[str, str] = {}
    counts: dict[str, int] = {}
    raw = metadata.get(TAG_KEY)
    if raw:
        try:
            counts = _merged_counts(json.loads(raw))
        except (ValueError, RecursionError) as e:
            errors[TAG_KEY] = str(e)
            counts = {}
    # Every tag is kept and screened (a cut at the N most frequent would let a file push its
    # telling tags out with filler); the caller's cap on the metadata's size bounds the work.
    ranked = sorted(counts.items())  # by name, then (stable) by count, most frequent first
    ranked.sort(key=_COUNT, reverse=True)
    ordered = dict(ranked)
    images, basis = _image_count(metadata, errors)
    for key in JSON_KEYS:
        if metadata.get(key):
            try:
                json.loads(metadata[key])
            except (ValueError, RecursionError) as e:
                errors[key] = str(e)
    if counts:
        total = sum(counts.values())
        if images > total:
            images, basis = total, "tag total"
        most = next(iter(ordered.values()))
        if most > images:
            images, basis = most, "max tag count"
    error = "; ".join(f"{key}: {message}" for key, message in errors.items()) or None
    return TagStats(ordered, images, basis, error, tuple(errors))


def _merged_counts(folders: Any) -> dict[str, int]:
    """``{tag: count}`` summed over folders, names stripped, lowercased and with runs of spaces as
    one. Raises `ValueError` on any shape or count problem."""
    if not isinstance(folders, dict):
        raise ValueError("not an object")
    counts: dict[str, int] = {}
    for tags in folders.values():
        if not isinstance(tags, dict):
            raise ValueError("a folder's tags are not an object")
        values = list(tags.values())
        # Whole-list checks: a LoRA has thousands of tags, and Python code per tag is the cost.
        if values and (set(map(type, values)) != {int} or min(values) < 0):
            bad = next(tag for tag, count in tags.items() if not _is_count(count))
            raise ValueError(f"count of {bad!r} is not a non-negative integer")
        names = list(map(str.lower, map(str.strip, tags)))
        joined = "\0".join(names)
        if "  " in joined or "\t" in joined or "\n" in joined or "\r" in joined:
            names = [" ".join(name.split()) for name in names]
        if not counts and len(set(names)) == len(names):
            counts = dict(zip(names, values))  # the usual case: one folder, no names merging
        else:
            for name, count in zip(names, values):
                counts[name] = counts.get(name, 0) + count
    counts.pop("", None)
    return counts


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0  # bool is an int subclass, and no count either


def _image_count(metadata: Mapping[str, str], errors: dict[str, str]) -> tuple[int, str]:
    """Images without repeats: the dataset folders' ``img_count`` sum, else ``ss_num_train_images``
    (which kohya counts *with* repeats, so shares computed from it err low). Both are checked
    whichever is used; problems go to `errors`."""
    trained = 0
    raw = metadata.get(IMAGES_KEY)
    if raw is not None:
        if raw.strip().isdecimal() and len(raw.strip()) <= MAX_COUNT_DIGITS:
            trained = int(raw)
        else:
            errors[IMAGES_KEY] = f"{raw[:40]!r} is not a non-negative integer"
    raw = metadata.get(DIRS_KEY)
    if raw:
        try:
            dirs = json.loads(raw)
            if not isinstance(dirs, dict):
                raise ValueError("not an object")
            total = 0
            for name, info in dirs.items():
                count = info.get("img_count", 0) if isinstance(info, dict) else None
                if not _is_count(count):
                    raise ValueError(f"img_count of {name!r} is not a non-negative integer")
                total += count
            if total > 0:
                return total, DIRS_KEY
        except (ValueError, RecursionError) as e:
            errors[DIRS_KEY] = str(e)
    return trained, IMAGES_KEY if trained else ""


def metadata_findings(metadata: Mapping[str, str], file_name: str, lexicon: TermScanner,
                      policy: Policy, stats: TagStats | None = None) -> list[Finding]:
    """Findings from a model's file name and metadata.

    Args:
        metadata (`Mapping[str, str]`): the safetensors ``__metadata__`` (empty for other formats).
        file_name (`str`): the file's name (no folders).
        lexicon (`TermScanner`): the prompt stage's term engine.
        policy (`Policy`): supplies the lexical and ``tag_share`` thresholds.
        stats (`TagStats`, *optional*): `tag_stats(metadata)`, when the caller already has it.

    Returns:
        `list[Finding]`: lexical findings over every metadata value (field = its key), the key
        names (field ``__metadata__ keys``) and the file name (field ``file_name``); one
        ``tag_share`` finding per category seen in the training tags; and ``tag_count`` findings
        for protected combinations whose cue tags each reach `MIN_COMBO_IMAGES` images.
    """
    stats = stats if stats is not None else tag_stats(metadata)
    fields = [FILE_NAME_FIELD]
    texts = [file_name]
    for key, value in metadata.items():
        fields.append(KEYS_FIELD)
        texts.append(key)
        if key == TAG_KEY and key not in stats.unparsed:
            continue  # the tags are weighed by share below; a stray one is not a lexical hit
        if key == DIRS_KEY and key not in stats.unparsed:
            value = _TAG_SEPARATOR.join(_folder_names(value))
        if value:
            fields.append(key)
            texts.append(value)
    findings = []
    seen: set[tuple[str, str, str]] = set()
    # One term-engine call for all fields: its cost is mostly per call, and metadata can hold
    # thousands of keys (the total text is capped by the caller).
    for index, hit, offset in _scan_joined(texts, lexicon, LEXICAL):
        key = fields[index]
        if (key, hit.category, hit.term) in seen:
            continue
        seen.add((key, hit.category, hit.term))
        findings.append(Finding(hit.category, 1.0, LEXICAL, policy.threshold(hit.category, LEXICAL, 1.0),
                                term=hit.term, span=(hit.span[0] - offset, hit.span[1] - offset), field=key))
    findings += _tag_findings(stats, lexicon, policy)
    return findings


def _tag_findings(stats: TagStats, lexicon: TermScanner, policy: Policy) -> list[Finding]:
    if not stats.counts or stats.images <= 0:
        return []
    per_category: dict[str, dict[str, int]] = {}
    tagged = _tag_hits(stats.counts, lexicon)
    # Most frequent tag first (as the tag list is), so findings come in a stable order.
    for tag in sorted(tagged, key=lambda t: (-stats.counts[t], t)):
        for category, _ in tagged[tag]:
            per_category.setdefault(category, {})[tag] = stats.counts[tag]
    findings = []
    ranked: dict[str, list[tuple[str, int]]] = {}
    for category, hits in per_category.items():
        ranked[category] = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        top_tag, count = ranked[category][0]
        # The largest single tag is a lower bound on the images carrying any of these tags.
        share = min(1.0, count / stats.images)
        findings.append(Finding(
            category, share, TAG_SHARE, policy.threshold(category, TAG_SHARE, DEFAULT_TAG_SHARE),
            term=top_tag, field=TAG_KEY,
            detail=f"{count} of {stats.images} training images ({share:.1%}); tags: {_quoted(ranked[category])}",
        ))
    return findings + _combo_findings(ranked, policy)


def _combo_findings(ranked: Mapping[str, list[tuple[str, int]]], policy: Policy) -> list[Finding]:
    """Protected combinations whose cues each reach `MIN_COMBO_IMAGES` images (shares aside)."""
    cues = {category: tags for category, tags in ranked.items() if tags[0][1] >= MIN_COMBO_IMAGES}
    findings = []
    for name, combo in policy.combinations.items():
        present = [c for c in combo.any if c in cues][:1]
        if not all(c in cues for c in combo.all) or (combo.any and not present):
            continue
        parts = [*combo.all, *present]
        findings.append(Finding(
            name, 1.0, TAG_COUNT, None, term=cues[parts[0]][0][0], field=TAG_KEY,
            detail=" + ".join(f"{c}: {_quoted(cues[c])}" for c in parts)
                   + f" training images (each ≥ {MIN_COMBO_IMAGES}, however many others)",
        ))
    return findings


def _quoted(ranked: list[tuple[str, int]]) -> str:
    more = f" and {len(ranked) - TAGS_PER_FINDING} more" if len(ranked) > TAGS_PER_FINDING else ""
    return ", ".join(f"{tag} ({n})" for tag, n in ranked[:TAGS_PER_FINDING]) + more


# Term hits per tag, per term engine: LoRAs share most of their tags ("1girl", "solo", ...), so a
# folder scan or a host loading LoRA after LoRA screens each distinct tag once per process.
MAX_CACHED_TAGS = 200_000


class _TagMemo:
    """The tags a term engine has screened, and the hits of the few that had any (so a look-up
    is a set intersection, not a loop over thousands of tags)."""

    __slots__ = ("seen", "hits")

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.hits: dict[str, tuple[tuple[str, str], ...]] = {}


_TAG_HITS: weakref.WeakKeyDictionary[Any, _TagMemo] = weakref.WeakKeyDictionary()
_TAG_HITS_LOCK = threading.Lock()


def _tag_hits(tags: Iterable[str], lexicon: TermScanner) -> dict[str, tuple[tuple[str, str], ...]]:
    """``{tag: ((category, term), ...)}`` for the tags with hits (in no particular order)."""
    wanted = set(tags)
    with _TAG_HITS_LOCK:
        try:
            memo = _TAG_HITS.get(lexicon)
            if memo is None:
                memo = _TAG_HITS[lexicon] = _TagMemo()
        except TypeError:  # a term engine that cannot be weakly referenced: no memo
            memo = _TagMemo()
        if len(memo.seen) > MAX_CACHED_TAGS:
            memo.seen.clear()
            memo.hits.clear()
        # Read under the lock: another thread may clear the memo once it is released.
        result = {tag: memo.hits[tag] for tag in memo.hits.keys() & wanted}
        fresh = wanted - memo.seen
    if fresh:
        found = {tag: hits for tag, hits in _scan_tags(sorted(fresh), lexicon).items() if hits}
        result.update(found)
        with _TAG_HITS_LOCK:
            memo.seen |= fresh
            memo.hits.update(found)
    return result


def _scan_tags(tags: list[str], lexicon: TermScanner) -> dict[str, tuple[tuple[str, str], ...]]:
    hits: dict[str, dict[tuple[str, str], None]] = {tag: {} for tag in tags}
    for index, hit, _ in _scan_joined(tags, lexicon, TAG_KEY):
        hits[tags[index]][(hit.category, hit.term)] = None
    return {tag: tuple(found) for tag, found in hits.items()}


def _scan_joined(texts: list[str], lexicon: TermScanner, field: str) -> Iterator[tuple[int, TermHitLike, int]]:
    """Scan `texts` in one term-engine call: ``(index of the text, hit, the text's offset)`` for
    each hit inside one text; cue-only hits and phrases spanning two texts are dropped."""
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(_TAG_SEPARATOR)
    for hit in lexicon.scan(_spaced(_TAG_SEPARATOR.join(texts)), field):
        index = bisect.bisect_right(starts, hit.span[0]) - 1
        if hit.category in CUE_ONLY or hit.span[1] > starts[index] + len(texts[index]):
            continue
        yield index, hit, starts[index]


def _folder_names(raw: str) -> list[str]:
    """Dataset folder names from ``ss_dataset_dirs`` (``{"10_name": {"n_repeats":..}}``)."""
    if not raw:
        return []
    try:
        dirs = json.loads(raw)
    except (ValueError, RecursionError):
        return [raw]  # screen the raw text rather than nothing
    return [str(name) for name in dirs] if isinstance(dirs, dict) else [raw]


def _spaced(text: str) -> str:
    """Underscores as spaces (``10_some_name``, ``long_hair``), same length so spans still line up."""
    return text.replace("_", " ")


def details_of(stats: TagStats, top_n: int) -> dict[str, Any]:
    """Verdict details for the training tags: the top tags and what shares were computed against
    (a parse error is the caller's ``error``, see `TagStats.error`)."""
    out: dict[str, Any] = {"top_tags": [[tag, n] for tag, n in stats.top(top_n)],
                           "train_images": stats.images}
    return out
