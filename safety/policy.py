"""Policies: TOML profiles (classroom, public, adult) and user files that extend them.

`data/policies/_base.toml` is both the defaults and the schema. A user file names a profile (or
another file) in `extends` and overrides keys; anything the base does not know, any value of the
wrong type, and any attempt to relax `minor_sexual` or `real_person_sexual` is a `PolicyError`
naming the file and line.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import PolicyError
from .image_backends import LOADERS
from .verdict import Action

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 hosts (A1111/Forge)
    import tomli as tomllib

PROFILES = ("classroom", "public", "adult")
DEFAULT_PROFILE = "public"
# Categories no policy can relax: action stays block at every stage, thresholds only go down,
# and their combinations cannot be edited. Besides the two the product promises, a hash a host
# listed and a pickle that can run code are never let through.
PROTECTED = ("minor_sexual", "real_person_sexual", "blocked_hash", "unsafe_code")
ACTIONS = tuple(a.value for a in Action)
CATEGORY_KEYS = ("action", "stage_actions", "thresholds")
STAGES = ("prompt", "model", "preview", "image")  # the `stage` of every Verdict
# Policy keys that name image backends (a misspelt one would fail every image at run time).
BACKEND_LISTS = (("image", "backends"), ("image", "required"), ("monitor", "backends"))
_MAX_EXTENDS_DEPTH = 8


@dataclass(frozen=True)
class Combination:
    """`all` categories fired and at least one of `any` (when given) → a derived category fires.
    `min_scores` raises the score a signal (by source) needs to count as a cue here."""

    all: tuple[str, ...]
    any: tuple[str, ...]
    min_scores: Mapping[str, float]


@dataclass(frozen=True)
class Policy:
    """A resolved, validated policy. Build it with `load_policy`; it never changes afterwards.

    Args:
        name (`str`): profile or file name, shown to people.
        source (`str`): where it came from (``builtin:public`` or a path).
        data (`Mapping`): the resolved settings (read-only).
        fingerprint (`str`): 16 hex digits of SHA-256 over the resolved settings; travels with
            every verdict so a record says exactly which rules decided.
    """

    name: str
    source: str
    data: Mapping[str, Any]
    fingerprint: str

    def section(self, name: str) -> Mapping[str, Any]:
        """Settings of one stage, e.g. ``policy.section("prompt")["semantic"]``."""
        return self.data.get(name, MappingProxyType({}))

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.data["categories"])

    def action_for(self, category: str, stage: str) -> Action:
        """The action a fired `category` gets at `stage`. Unknown categories warn."""
        rule = self.data["categories"].get(category)
        if rule is None:
            return Action.WARN
        return Action(rule.get("stage_actions", {}).get(stage, rule["action"]))

    def threshold(self, category: str, source: str, default: float | None = None) -> float:
        """The threshold for `source`'s score on `category`.

        Raises:
            `PolicyError` if the policy sets none and no `default` is given.
        """
        value = self.data["categories"].get(category, {}).get("thresholds", {}).get(source, default)
        if value is None:
            raise PolicyError(f"no threshold for signal '{source}' in [categories.{category}]; "
                              f"add it to thresholds", path=self.source)
        return float(value)

    def combo_threshold(self, category: str, source: str, threshold: float) -> float:
        """The threshold a cue must reach to count in a protected combination: the stricter of
        `threshold` and the built-in one, so relaxing `sexual` does not relax `minor_sexual`."""
        builtin = _builtin_thresholds().get((category, source))
        return threshold if builtin is None else min(threshold, builtin)

    @functools.cached_property  # decide() asks on every check; the data never changes
    def combinations(self) -> Mapping[str, Combination]:
        return {name: Combination(tuple(c.get("all", ())), tuple(c.get("any", ())),
                                  MappingProxyType(dict(c.get("min_scores", {}))))
                for name, c in self.data.get("combinations", {}).items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "fingerprint": self.fingerprint,
                **_thaw(self.data)}


def load_policy(name_or_path: str | Path | None = None) -> Policy:
    """Load a built-in profile or a policy file.

    Args:
        name_or_path (`str` or `Path`, *optional*, defaults to ``"public"``): a profile name
            (``classroom``, ``public``, ``adult``) or a TOML file that `extends` one.

    Returns:
        `Policy`

    Raises:
        `PolicyError`: the file is malformed or tries to relax a protected category.
        `FileNotFoundError`: no such profile or file.

    Example:
        >>> load_policy("classroom").action_for("violence", "image")
        <Action.BLOCK: 'block'>
    """
    if name_or_path is None:
        name_or_path = DEFAULT_PROFILE
    if isinstance(name_or_path, str) and name_or_path in PROFILES:
        return _finish(_load_builtin(name_or_path), f"builtin:{name_or_path}", name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no policy file '{path}' and no profile of that name "
                                f"(profiles: {', '.join(PROFILES)})")
    data = _load_file(path, depth=0)
    return _finish(data, str(path), str(data.get("name") or path.stem))


def _finish(data: dict[str, Any], source: str, name: str) -> Policy:
    data["name"] = name
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Policy(name=name, source=source, data=_freeze(data), fingerprint=fingerprint)


def _read_toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"line (\d+)", str(e))
        raise PolicyError(f"not valid TOML: {e}", path=path,
                          line=int(match.group(1)) if match else None) from None


def _builtin_text(name: str) -> str:
    return resources.files(__package__).joinpath("data", "policies", f"{name}.toml").read_text("utf-8")


_BASE_CACHE: dict[str, Any] = {}


def _builtin_base() -> dict[str, Any]:
    if not _BASE_CACHE:
        _BASE_CACHE.update(_read_toml(_builtin_text("_base"), "builtin:_base"))
    return _BASE_CACHE


@functools.lru_cache(maxsize=1)
def _builtin_thresholds() -> dict[tuple[str, str], float]:
    return {(category, source): float(value)
            for category, rule in _builtin_base()["categories"].items()
            for source, value in rule.get("thresholds", {}).items()}


def _load_builtin(name: str) -> dict[str, Any]:
    if name not in PROFILES:
        raise FileNotFoundError(f"no profile '{name}' (profiles: {', '.join(PROFILES)})")
    data = _read_toml(_builtin_text(name), f"builtin:{name}")
    return _merge(copy.deepcopy(_builtin_base()), data)


def _load_file(path: Path, depth: int) -> dict[str, Any]:
    if depth > _MAX_EXTENDS_DEPTH:
        raise PolicyError(f"'extends' chain deeper than {_MAX_EXTENDS_DEPTH}; is there a loop?",
                          path=str(path))
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None
    data = _read_toml(text, str(path))
    _validate(data, str(path), text)
    parent = data.get("extends") or DEFAULT_PROFILE
    if parent in PROFILES:
        base = _load_builtin(parent)
    else:
        parent_path = (path.parent / parent).resolve()
        if not parent_path.is_file():
            raise PolicyError(f"extends = '{parent}': not a profile ({', '.join(PROFILES)}) "
                              f"and no file {parent_path}", path=str(path), line=_line_of(text, (), "extends"))
        base = _load_file(parent_path, depth + 1)
        _rebase_lists(base, parent_path.parent, path.parent)
    merged = _merge(base, data)
    _check_detection_kept(merged, str(path), text)
    return merged


def _rebase_lists(data: dict[str, Any], old_folder: Path, new_folder: Path) -> None:
    """Re-express the relative [lists] paths of `data`, written from `old_folder`, from `new_folder`.

    A relative list path belongs to the file that names it, but readers resolve it from the folder
    of the file that was loaded; rebased at each `extends` step, it reaches them right. Relative,
    not absolute, so a policy's fingerprint does not depend on where its files are installed.
    """
    lists = data.get("lists", {})
    for key, value in lists.items():
        if value and not os.path.isabs(value):
            target = (old_folder / value).resolve()
            try:
                lists[key] = os.path.relpath(target, new_folder.resolve())
            except ValueError:  # another drive (Windows): no relative path leads there
                lists[key] = str(target)


def _validate(data: Mapping[str, Any], path: str, text: str | None) -> None:
    """Check `data` against the base schema and the protected-category rules."""
    base = _builtin_base()

    def fail(message: str, table: tuple[str, ...], key: str) -> None:
        raise PolicyError(message, path=path, line=_line_of(text, table, key) if text else None)

    for key, value in data.items():
        if key in ("categories", "combinations"):
            continue
        if key not in base:
            fail(f"unknown key '{key}' (allowed: {', '.join(sorted(base))})", (), key)
        _check_types(value, base[key], (key,), fail)
    choices = base["choices"]
    for dotted, allowed in choices.items():
        table, _, key = dotted.rpartition(".")
        value = data.get(table, {}).get(key)
        if value is not None and value not in allowed:
            fail(f"{dotted} = '{value}' is not one of {', '.join(allowed)}", (table,), key)
    for dotted, (low, high) in base["ranges"].items():
        table, _, key = dotted.rpartition(".")
        value = data.get(table, {}).get(key)
        items = value if isinstance(value, list) else [] if value is None else [value]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high for v in items):
            fail(f"{dotted} = {value!r}: {'each item ' if isinstance(value, list) else ''}must be a number "
                 f"from {low} to {high}", (table,), key)
    for table, key in BACKEND_LISTS:
        unknown = [name for name in data.get(table, {}).get(key, []) if name not in LOADERS]
        if unknown:
            fail(f"{table}.{key}: no image backend named {', '.join(map(repr, unknown))} "
                 f"(backends: {', '.join(LOADERS)})", (table,), key)

    for key in ("categories", "combinations"):
        if not isinstance(data.get(key, {}), Mapping):
            fail(f"'{key}' must be a table ([{key}.NAME] sections)", (), key)
    for category, rule in data.get("categories", {}).items():
        table = ("categories", category)
        if not isinstance(rule, Mapping):
            fail(f"[categories.{category}] must be a table", ("categories",), category)
        for key, value in rule.items():
            if key not in CATEGORY_KEYS:
                fail(f"unknown key '{key}' in [categories.{category}] (allowed: {', '.join(CATEGORY_KEYS)})",
                     table, key)
            if key != "action" and not isinstance(value, Mapping):
                fail(f"{key} in [categories.{category}] must be a table, e.g. {key} = {{ image = ... }}",
                     table, key)
        for stage in rule.get("stage_actions", {}):
            if stage not in STAGES:
                fail(f"stage_actions.{stage} in [categories.{category}]: no stage '{stage}' "
                     f"(stages: {', '.join(STAGES)})", (*table, "stage_actions"), stage)
        actions = {"action": rule.get("action")} if "action" in rule else {}
        actions.update({f"stage_actions.{s}": a for s, a in rule.get("stage_actions", {}).items()})
        for key, value in actions.items():
            if value not in ACTIONS:
                fail(f"{key} = {value!r} in [categories.{category}] is not one of {', '.join(ACTIONS)}",
                     table, key.rpartition(".")[2])
            if category in PROTECTED and value != "block":
                fail(f"{category} is blocked in every profile and cannot be relaxed "
                     f"({key} = '{value}'; only 'block' is accepted)", table, key.rpartition(".")[2])
        for signal, value in rule.get("thresholds", {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                fail(f"thresholds.{signal} in [categories.{category}] must be a number from 0 to 1",
                     table, signal)
            builtin = base["categories"].get(category, {}).get("thresholds", {}).get(signal)
            if category in PROTECTED and builtin is not None and value > builtin:
                fail(f"{category} cannot be relaxed: thresholds.{signal} = {value} is above the "
                     f"built-in {builtin} (lower values are stricter and accepted)", table, signal)
        if category not in base["categories"] and "action" not in rule:
            fail(f"new category [categories.{category}] needs an action", table, "action")

    for name, combo in data.get("combinations", {}).items():
        table = ("combinations", name)
        if name in PROTECTED:
            fail(f"the {name} combination is built in and cannot be edited", ("combinations",), name)
        if not isinstance(combo, Mapping) or set(combo) - {"all", "any", "min_scores"} or not combo.get("all"):
            fail(f"[combinations.{name}] needs 'all' (and optionally 'any', 'min_scores'): lists of "
                 f"categories", table, "all")


def _check_detection_kept(data: Mapping[str, Any], path: str, text: str) -> None:
    """Relaxing minor_sexual indirectly is relaxing it: the image stage must keep requiring a
    backend that feeds each of its cues (images fail closed when a required one is missing), and
    so must the subset of them that judges in-loop previews (``[monitor] backends``)."""
    image, previews = data["image"], set(data["monitor"]["backends"])
    required = set(image["required"])
    kept = {}
    for cue in ("minor", "sexual"):
        feeders = set(data["categories"][cue].get("thresholds", {})) - {"lexical", "semantic", "semantic_mpnet", "tag_share"}
        kept[cue] = required & feeders
        if not kept[cue]:
            raise PolicyError(
                f"[image] required must keep a backend that feeds '{cue}' ({', '.join(sorted(feeders))}): "
                f"without one, minor_sexual could not be detected in images", path=path,
                line=_line_of(text, ("image",), "required") or _line_of(text, ("image",), "backends"))
    ensemble = {*image["backends"], *required}
    line = _line_of(text, ("monitor",), "backends")
    if not previews or not previews <= ensemble:
        raise PolicyError(f"[monitor] backends must be a non-empty subset of the [image] backends "
                          f"({', '.join(sorted(ensemble))}), got {sorted(previews)} (a policy that changes "
                          f"[image] backends names its preview subset too)", path=path, line=line)
    for cue, feeders in kept.items():
        if not feeders & previews:
            raise PolicyError(f"[monitor] backends must keep a required backend that feeds '{cue}' "
                              f"({', '.join(sorted(feeders))}): without one, minor_sexual could not be "
                              f"stopped in previews", path=path, line=line)


# Keys an earlier sdguard took, and what says the same now.
_REPLACED_KEYS = {
    "audit.store_blocked_prompt_text": "; it was replaced by prompt_text = \"all\" (blocked prompts' text "
                                       "too), \"allowed\" or \"none\" (the default)",
}


def _check_types(value: Any, schema: Any, where: tuple[str, ...], fail: Any) -> None:
    if isinstance(schema, Mapping):
        if not isinstance(value, Mapping):
            fail(f"[{'.'.join(where)}] must be a table", where[:-1], where[-1])
        for key, sub in value.items():
            if where in (("choices",), ("ranges",)):
                continue
            if key not in schema:
                hint = _REPLACED_KEYS.get(".".join((*where, key)), "")
                fail(f"unknown key '{key}' in [{'.'.join(where)}] (allowed: {', '.join(sorted(schema))}){hint}",
                     where, key)
            _check_types(sub, schema[key], (*where, key), fail)
    elif type(value) is not type(schema) and not (isinstance(schema, float) and type(value) is int):
        fail(f"{'.'.join(where)} must be {type(schema).__name__}, not {type(value).__name__}",
             where[:-1], where[-1])


def _line_of(text: str | None, table: tuple[str, ...], key: str) -> int | None:
    """1-based line of `key` inside `[table]` (or of a dotted/inline form), best effort."""
    if not text:
        return None
    lines = text.splitlines()
    header = "[" + ".".join(table) + "]" if table else None
    start = 0
    if header:
        for i, line in enumerate(lines):
            if line.strip().replace(" ", "") == header.replace(" ", ""):
                start = i + 1
                break
        else:
            start = -1
    key_re = re.compile(r'^\s*"?' + re.escape(key) + r'"?\s*=')
    word_re = re.compile(r"\b" + re.escape(key) + r"\s*=")
    if start >= 0:
        end = next((i for i in range(start, len(lines)) if header and lines[i].lstrip().startswith("[")),
                   len(lines))
        # A plain `key =` line first, then the key inside an inline table (`t = { key = ... }`).
        for pattern in (key_re, word_re):
            for i in range(start, end):
                if pattern.search(lines[i]):
                    return i + 1
    # Dotted keys elsewhere: the first line that names both the table's last part and the key.
    anchor = table[-1] if table else key
    for i, line in enumerate(lines):
        if re.search(r"\b" + re.escape(key) + r"\b", line) and anchor in line:
            return i + 1
    if header and start > 0:
        return start
    return None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value
