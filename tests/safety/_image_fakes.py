"""Scripted image backends for the image-stage tests: they return what a test tells them to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sdguard.image_types import Detection, Face, Region


class FakeDetector:
    """A detector whose output is computed from the image by `rule` (so batches can differ).

    `rule(image) -> Detection`; default: nothing found. `fail` makes every call raise.
    """

    tileable = False
    needs_faces = False

    def __init__(self, name: str, rule: Callable[[Any], Detection] | None = None, *, fail: bool = False,
                 tileable: bool = False):
        self.name = name
        self.rule = rule or (lambda image: Detection(name))
        self.fail = fail
        self.tileable = tileable
        self.calls: list[list[tuple[int, int]]] = []

    def detect(self, images: Sequence[Any]) -> list[Detection]:
        self.calls.append([im.shape[:2] for im in images])
        if self.fail:
            raise RuntimeError("onnxruntime exploded")
        return [self.rule(im) for im in images]


class FakeAge:
    """An age backend that gives every face the age written in the image's first pixel's red value."""

    name = "age"
    tileable = False
    needs_faces = True

    def __init__(self):
        self.seen_faces: list[tuple[Face, ...]] = []

    def detect(self, images: Sequence[Any], faces: Sequence[Sequence[Face]] | None = None) -> list[Detection]:
        out = []
        for image, image_faces in zip(images, faces or [()] * len(images)):
            self.seen_faces.append(tuple(image_faces))
            age = float(image[0, 0, 0])
            p_minor = 0.95 if age < 18 else 0.02
            aged = tuple(Face(f.box, f.score, age=age, age_confidence=max(p_minor, 1 - p_minor))
                         for f in image_faces)
            out.append(Detection("age", {"minor": p_minor} if image_faces else {}, faces=aged))
        return out


def marked_image(age: int = 30, *, nude: bool = False, face: bool = True, size: int = 256) -> np.ndarray:
    """A synthetic image whose marker pixels script the fakes: red of pixel (0,0) = age,
    green of pixel (0,1) = 255 when 'nude', blue of pixel (0,2) = 255 when a face is present."""
    image = np.random.default_rng(age).integers(20, 200, (size, size, 3), dtype=np.uint8)  # texture
    image[0, 0, 0] = age
    image[0, 1, 1] = 255 if nude else 0
    image[0, 2, 2] = 255 if face else 0
    return image


NUDE_BOX = (40, 60, 120, 140)
FACE_BOX = (150, 20, 200, 70)


def scripted_nudenet(image: Any) -> Detection:
    """Reads the markers of `marked_image`: an exposed breast region and/or a face."""
    regions = (Region("FEMALE_BREAST_EXPOSED", 0.9, NUDE_BOX, "sexual"),) if image[0, 1, 1] == 255 else ()
    faces = (Face(FACE_BOX, 0.8),) if image[0, 2, 2] == 255 else ()
    scores = {"sexual": 0.9} if regions else {}
    return Detection("nudenet", scores, regions, faces)


def fake_backends(**overrides: Any) -> dict[str, Any]:
    """The public profile's three backends, scripted."""
    backends = {"nudenet": FakeDetector("nudenet", scripted_nudenet),
                "opennsfw": FakeDetector("opennsfw", lambda im: Detection("opennsfw", {"sexual": 0.1})),
                "age": FakeAge()}
    backends.update(overrides)
    return backends
