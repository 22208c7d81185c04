"""NudeNet v3 (YOLOv8n, ``320n.onnx`` from the `nudenet` wheel): body-part regions and faces.

Runs the ONNX file directly with onnxruntime; the `nudenet` package's Python code is never
imported. Preprocessing follows the package: pad right/bottom to a square, resize to 320, scale
to 0..1, NCHW, RGB channel order (the order the detector scores highest on a real face; the
package's own file loader swaps channels twice and feeds BGR).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..image_types import Box, Detection, Face, Region
from . import locate_model, onnx_session, warm_up

NAME = "nudenet"
INPUT_SIZE = 320
# Boxes below this score are dropped before NMS, as the package does.
MIN_SCORE = 0.2
NMS_IOU = 0.45

# Output channel order of 320n.onnx (after the 4 box coordinates).
LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
FACE_LABELS = frozenset({"FACE_FEMALE", "FACE_MALE"})
# What each label counts toward. Labels not listed (a shirtless man, feet, bellies, armpits) are
# ordinary in beach and sport photos; counting them as suggestive would also make every child in
# a swimsuit a minor ∧ suggestive → minor_sexual block, so they count toward nothing.
CATEGORY_OF = {
    "FEMALE_GENITALIA_EXPOSED": "sexual",
    "MALE_GENITALIA_EXPOSED": "sexual",
    "FEMALE_BREAST_EXPOSED": "sexual",
    "ANUS_EXPOSED": "sexual",
    "BUTTOCKS_EXPOSED": "sexual",
    "FEMALE_GENITALIA_COVERED": "suggestive",
    "FEMALE_BREAST_COVERED": "suggestive",
    "BUTTOCKS_COVERED": "suggestive",
    "ANUS_COVERED": "suggestive",
}


class NudeNetBackend:
    """NudeNet's 320n detector. `detect` returns regions (with categories), faces and, per
    category, the highest region score."""

    name = NAME
    tileable = True
    needs_faces = False

    def __init__(self, session: Any):
        self._session = session
        self._input = session.get_inputs()[0].name

    def detect(self, images: Sequence[Any]) -> list[Detection]:
        """One `Detection` per RGB uint8 image, boxes in that image's pixels."""
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: Any) -> Detection:
        blob, scale = _preprocess(image)
        output = self._session.run(None, {self._input: blob})[0]
        height, width = image.shape[:2]
        regions: list[Region] = []
        faces: list[Face] = []
        scores: dict[str, float] = {}
        for label, score, box in _postprocess(output[0], scale, width, height):
            if label in FACE_LABELS:
                faces.append(Face(box=box, score=score))
                continue
            category = CATEGORY_OF.get(label)
            regions.append(Region(label, score, box, category))
            if category is not None:
                scores[category] = max(score, scores.get(category, 0.0))
        return Detection(NAME, scores, tuple(regions), tuple(faces))


def _preprocess(image: Any) -> tuple[Any, float]:
    """Pad to a square at the top-left, resize to 320², NCHW float32 in 0..1; returns the blob
    and the factor from model pixels back to image pixels."""
    import cv2
    import numpy as np

    height, width = image.shape[:2]
    side = max(height, width)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:height, :width] = image
    resized = cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    blob = resized.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    return np.ascontiguousarray(blob), side / INPUT_SIZE


def _postprocess(output: Any, scale: float, width: int, height: int) -> list[tuple[str, float, Box]]:
    """Decode YOLOv8 rows (cx, cy, w, h, 18 class scores) into (label, score, box) after NMS."""
    import numpy as np

    rows = output.T  # (anchors, 4 + classes)
    class_scores = rows[:, 4:]
    best = class_scores.argmax(axis=1)
    score = class_scores[np.arange(len(rows)), best]
    keep = score >= MIN_SCORE
    rows, best, score = rows[keep], best[keep], score[keep]
    cx, cy, w, h = (rows[:, i] * scale for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    out = []
    for i in nms(boxes, score, NMS_IOU):
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
        if x1 > x0 and y1 > y0:
            out.append((LABELS[int(best[i])], float(score[i]), (x0, y0, x1, y1)))
    return out


def nms(boxes: Any, scores: Any, iou: float) -> list[int]:
    """Greedy non-maximum suppression over (x0, y0, x1, y1) boxes; indices kept, best first."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        union = areas[i] + areas[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[overlap <= iou]
    return kept


def load() -> NudeNetBackend:
    """Load 320n.onnx from the weights manager or the installed `nudenet` package."""
    return warm_up(NudeNetBackend(onnx_session(locate_model("nudenet_320n", "nudenet", "320n.onnx"))), INPUT_SIZE)
