"""The one result type every stage returns, and the one function that turns findings into it.

A stage (prompt, model file, preview, image, ...) only *finds* things: each `Finding` says what it
saw, how sure it is, and the threshold the policy set for that signal. `decide()` applies the
policy: which categories fired, which combinations (minor ∧ sexual → minor_sexual) follow, and
what action each category gets at this stage. Hosts act on `Verdict.action` and show
`Verdict.message`; the audit trail stores `Verdict.to_dict()`.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .policy import Policy


class Action(str, enum.Enum):
    """What the host does, least to most severe. `max()` over actions picks the most severe."""

    ALLOW = "allow"
    WARN = "warn"
    CENSOR = "censor"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return self.severity < other.severity

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return self.severity <= other.severity

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return self.severity > other.severity

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return self.severity >= other.severity


_SEVERITY = {Action.ALLOW: 0, Action.WARN: 1, Action.CENSOR: 2, Action.BLOCK: 3}

# Reason codes that are not category names. Stable: audit, UI and tests rely on them.
GUARD_UNAVAILABLE = "guard_unavailable"
MALFORMED_INPUT = "malformed_input"


@dataclass(frozen=True)
class Finding:
    """One piece of evidence for one category.

    Args:
        category (`str`): e.g. ``"sexual"``, ``"minor"``, ``"ip_character"``.
        score (`float`): 0..1; lexical hits score 1.0.
        source (`str`): the signal that produced it: ``"lexical"``, ``"semantic"``, ``"nudenet"``, ...
            Policies set thresholds per (category, source).
        threshold (`float`, *optional*): the threshold in force; ``None`` means "fires when present"
            (a listed hash, a dangerous pickle import).
        term (`str`, *optional*): the matched list entry (its canonical form).
        span (`tuple[int, int]`, *optional*): ``[start, end)`` of the match in the *original* text.
        field (`str`, *optional*): where it was found: ``"prompt"``, ``"negative"``, a metadata key.
        model (`str`, *optional*): the model or list that produced the score.
        detail (`str`, *optional*): anything else a moderator needs (tag counts, face age, box).
    """

    category: str
    score: float
    source: str
    threshold: float | None = None
    term: str | None = None
    span: tuple[int, int] | None = None
    field: str | None = None
    model: str | None = None
    detail: str | None = None

    @property
    def fired(self) -> bool:
        return self.threshold is None or self.score >= self.threshold

    def describe(self) -> str:
        """A short human-readable account, used in reason messages."""
        if self.term is not None:
            where = f" in {self.field}" if self.field else ""
            text = f"'{self.term}'{where}"
        else:
            text = self.model or self.source
            if self.threshold is not None:
                text += f" {self.score:.2f} ≥ {self.threshold:.2f}"
        if self.detail:
            text += f" ({self.detail})"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"category": self.category, "score": round(float(self.score), 4),
                               "source": self.source}
        for name in ("threshold", "term", "field", "model", "detail"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.span is not None:
            out["span"] = list(self.span)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        span = data.get("span")
        return cls(
            category=data["category"], score=float(data["score"]), source=data["source"],
            threshold=data.get("threshold"), term=data.get("term"),
            span=tuple(span) if span is not None else None,  # type: ignore[arg-type]
            field=data.get("field"), model=data.get("model"), detail=data.get("detail"),
        )


@dataclass(frozen=True)
class Reason:
    """Why a verdict is not a plain allow. `code` is a category name or a stable code such as
    ``guard_unavailable``; `message` is safe to show the user (it never quotes blocked imagery)."""

    code: str
    action: Action
    message: str
    evidence: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The result of one check.

    Args:
        stage (`str`): ``"prompt"``, ``"model"``, ``"preview"``, ``"image"``, ...
        action (`Action`): the most severe action among `reasons`; ``ALLOW`` when there are none.
        categories (`Mapping[str, float]`): highest score seen per category, fired or not.
        reasons (`tuple[Reason, ...]`): one per category (or code) that asks for more than allow.
        policy_fingerprint (`str`): identifies the exact policy that decided.
        profile (`str`): the policy's name, for people.
        details (`Mapping[str, Any]`): stage data (regions, faces, hashes, step); JSON-serialisable.

    A check that could not run is never clean: it carries a ``guard_unavailable`` reason and blocks.
    """

    stage: str
    action: Action
    categories: Mapping[str, float]
    reasons: tuple[Reason, ...]
    policy_fingerprint: str
    profile: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @property
    def message(self) -> str:
        """One line for the user: what happened and why."""
        if not self.reasons:
            return f"sdguard: {self.stage} allowed"
        worst = [r.message for r in self.reasons if r.action is self.action]
        return f"sdguard: {self.stage} {self.action.value}: " + "; ".join(worst)

    @property
    def evidence(self) -> tuple[Finding, ...]:
        return tuple(f for r in self.reasons for f in r.evidence)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "action": self.action.value,
            "categories": {k: round(float(v), 4) for k, v in sorted(self.categories.items())},
            "reasons": [r.message for r in self.reasons],
            "codes": list(self.codes),
            "evidence": [dict(f.to_dict(), reason=r.code) for r in self.reasons for f in r.evidence],
            "policy": {"profile": self.profile, "fingerprint": self.policy_fingerprint},
        }
        out.update(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Inverse of `to_dict` (reasons get their action from the verdict's when not stored)."""
        known = {"stage", "action", "categories", "reasons", "codes", "evidence", "policy"}
        action = Action(data["action"])
        evidence: dict[str, list[Finding]] = {}
        for item in data.get("evidence", []):
            evidence.setdefault(item.get("reason", ""), []).append(Finding.from_dict(item))
        reasons = tuple(
            Reason(code, action, message, tuple(evidence.get(code, ())))
            for code, message in zip(data.get("codes", []), data.get("reasons", []))
        )
        return cls(
            stage=data["stage"], action=action, categories=dict(data.get("categories", {})),
            reasons=reasons, policy_fingerprint=data["policy"]["fingerprint"],
            profile=data["policy"]["profile"],
            details={k: v for k, v in data.items() if k not in known},
        )

    def merge(self, *others: Verdict) -> Verdict:
        """Combine verdicts of the same item (e.g. lexical and semantic, or several frames).

        Keeps the most severe action, the highest score per category and every reason.
        Later details override earlier ones key by key.
        """
        everything = (self, *others)
        categories: dict[str, float] = {}
        details: dict[str, Any] = {}
        for v in everything:
            for name, score in v.categories.items():
                categories[name] = max(score, categories.get(name, 0.0))
            details.update(v.details)
        reasons = tuple(r for v in everything for r in v.reasons)
        stages = list(dict.fromkeys(v.stage for v in everything))
        return replace(
            self, stage="+".join(stages), action=max((v.action for v in everything)),
            categories=categories, reasons=reasons, details=details,
        )


def decide(stage: str, findings: Iterable[Finding], policy: Policy,
           details: Mapping[str, Any] | None = None) -> Verdict:
    """Apply `policy` to a stage's findings.

    Args:
        stage (`str`): the stage name; selects per-stage actions (``stage_actions`` in the policy).
        findings (`Iterable[Finding]`): everything the stage saw, fired or not.
        policy (`Policy`): the policy in force.
        details (`Mapping[str, Any]`, *optional*): stage data copied into the verdict.

    Returns:
        `Verdict`: ``ALLOW`` unless some fired category's action says otherwise.

    Example:
        >>> from sdguard import load_policy
        >>> v = decide("prompt", [Finding("sexual", 1.0, "lexical", 1.0, term="nude")], load_policy("adult"))
        >>> v.action
        <Action.ALLOW: 'allow'>
    """
    findings = list(findings)
    for f in findings:  # NaN compares false with every threshold: it would pass as clean
        if not is_finite_number(f.score):
            return unavailable(stage, policy, f"the {f.source} score for {f.category}",
                               f"{f.score!r} is not a finite number", details)
    findings += _combinations(findings, policy)
    categories: dict[str, float] = {}
    fired: dict[str, list[Finding]] = {}
    for f in findings:
        categories[f.category] = max(f.score, categories.get(f.category, 0.0))
        if f.fired:
            fired.setdefault(f.category, []).append(f)
    reasons = []
    for category, evidence in fired.items():
        action = policy.action_for(category, stage)
        if action is Action.ALLOW:
            continue
        text = ", ".join(f.describe() for f in evidence[:5])
        if len(evidence) > 5:
            text += f" and {len(evidence) - 5} more"
        reasons.append(Reason(category, action, f"{category}: {text}", tuple(evidence)))
    reasons.sort(key=lambda r: r.action.severity, reverse=True)
    action = max((r.action for r in reasons), default=Action.ALLOW)
    return Verdict(stage, action, categories, tuple(reasons), policy.fingerprint, policy.name,
                   dict(details or {}))


def is_finite_number(value: Any) -> bool:
    """A real, finite number (Python or numpy), not a bool: what a detector's score must be."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def unavailable(stage: str, policy: Policy, what: str, error: BaseException | str,
                details: Mapping[str, Any] | None = None) -> Verdict:
    """The verdict of a check that could not run: it blocks, and says what failed and how to fix it."""
    message = f"{GUARD_UNAVAILABLE}: {what} could not run ({error}); blocked because a failed check never passes"
    reason = Reason(GUARD_UNAVAILABLE, Action.BLOCK, message)
    return Verdict(stage, Action.BLOCK, {}, (reason,), policy.fingerprint, policy.name,
                   dict(details or {}))


def _combinations(findings: list[Finding], policy: Policy) -> list[Finding]:
    """Derived findings such as minor ∧ sexual → minor_sexual.

    Cue categories are judged with thresholds no laxer than the built-in ones, so a policy that
    loosens `sexual` (e.g. `adult`) does not loosen `minor_sexual` with it; a combination's
    `min_scores` can ask more of a signal (by source) before it counts as a cue there.
    """
    derived = []
    for name, combo in policy.combinations.items():
        cues: dict[str, list[Finding]] = {}
        for f in findings:
            if f.threshold is None:
                cues.setdefault(f.category, []).append(f)
                continue
            limit = max(policy.combo_threshold(f.category, f.source, f.threshold),
                        combo.min_scores.get(f.source, 0.0))
            if f.score >= limit:
                cues.setdefault(f.category, []).append(f)
        if not all(c in cues for c in combo.all):
            continue
        present_any = [c for c in combo.any if c in cues]
        if combo.any and not present_any:
            continue
        parts = [max(cues[c], key=lambda f: f.score) for c in (*combo.all, *present_any[:1])]
        derived.append(Finding(
            category=name, score=min(p.score for p in parts), source="combination",
            detail=" + ".join(f"{p.category} {p.describe()}" for p in parts),
        ))
    return derived
