"""What image detectors return. Shared by the image guard, the in-loop monitor and every backend.

Images cross this boundary as RGB ``uint8`` numpy arrays of shape ``(H, W, 3)``; hosts convert
their tensors in their adapters. Boxes are pixel ``(x0, y0, x1, y1)`` in that image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Region:
    """A labelled box, e.g. NudeNet's ``FEMALE_BREAST_EXPOSED``; `category` is what it counts toward."""

    label: str
    score: float
    box: Box
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "score": round(float(self.score), 4), "box": list(self.box)}
        if self.category:
            out["category"] = self.category
        return out


@dataclass(frozen=True)
class Face:
    """A detected face and, when an age model ran, its estimated age."""

    box: Box
    score: float
    age: float | None = None
    age_confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": list(self.box), "score": round(float(self.score), 4)}
        if self.age is not None:
            out["age"] = round(float(self.age), 1)
        if self.age_confidence is not None:
            out["age_confidence"] = round(float(self.age_confidence), 4)
        return out


@dataclass(frozen=True)
class Detection:
    """One backend's output for one image.

    Args:
        backend (`str`): the backend name; policies set thresholds per (category, backend).
        scores (`Mapping[str, float]`): category → score in 0..1 (``sexual``, ``suggestive``, ``minor``, ...).
        regions (`tuple[Region, ...]`): boxes the censor can act on.
        faces (`tuple[Face, ...]`): faces, with ages when estimated.
        tags (`Mapping[str, float]`): raw labels (tagger tags, class names) for explanations.
    """

    backend: str
    scores: Mapping[str, float] = field(default_factory=dict)
    regions: tuple[Region, ...] = ()
    faces: tuple[Face, ...] = ()
    tags: Mapping[str, float] = field(default_factory=dict)


class ImageBackend(Protocol):
    """A detector loaded once (lazily) and reused. `detect` takes a batch and returns one
    `Detection` per image, in order. It raises on failure; the guard turns that into a block."""

    name: str

    def detect(self, images: Sequence[Any]) -> list[Detection]: ...
