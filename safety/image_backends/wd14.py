"""A WD14-style anime tagger (SmilingWolf's ``wd-*-tagger`` ONNX models and ``selected_tags.csv``):
Danbooru ratings and tags for illustrations, which photo-trained detectors judge poorly.

Rating tags (CSV category 9) feed categories: ``explicit`` → ``sexual``, ``questionable`` →
``suggestive``. Tags that mark a character as a child (`MINOR_TAGS`: loli, shota, child, ...) feed
``minor``: face-age models are trained on photographs and cannot see these. Every tag at or
above `TAG_REPORT_MIN` is kept in ``Detection.tags`` for explanations.

Input convention of SmilingWolf's taggers (and their reference app): the image is composited on
white, padded to a white square, resized to the model's side (448) with bicubic filtering, then
fed as float32 **BGR** values 0..255 in NHWC order. Outputs are already sigmoid probabilities.

User-provided weights (the manifest's ``wd14_vit_v3`` + ``wd14_vit_v3_tags``); runs on onnxruntime.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import weights
from ..errors import GuardUnavailable
from ..image_types import Detection
from . import onnx_session

NAME = "wd14"
WEIGHTS = "wd14_vit_v3"
TAGS = "wd14_vit_v3_tags"
RATING_CATEGORY = 9  # selected_tags.csv: 0 general, 4 character, 9 rating
RATING_CATEGORIES: Mapping[str, str] = {"explicit": "sexual", "questionable": "suggestive"}
# Danbooru tags that say the depicted character is a child. A cue only: `decide()` blocks
# minor ∧ sexual; a child alone is allowed.
MINOR_TAGS = frozenset({"loli", "shota", "child", "female_child", "male_child", "toddler", "young",
                        "aged_down", "baby"})
# Tags below this probability are left out of the explanation (they still feed nothing).
TAG_REPORT_MIN = 0.35
PAD_COLOUR = (255, 255, 255)
DEFAULT_SIDE = 448


class WD14Backend:
    """A WD14 tagger on whole images (tags describe the whole picture, so no tiles)."""

    name = NAME
    tileable = False
    needs_faces = False

    def __init__(self, session: Any, tags_path: str | Path, *, minor_tags: Iterable[str] = MINOR_TAGS):
        """
        Args:
            session: an onnxruntime ``InferenceSession`` on the tagger.
            tags_path (`str | Path`): its ``selected_tags.csv`` (``tag_id,name,category,count``).
            minor_tags (`Iterable[str]`, *optional*): tag names that feed ``minor``.

        Raises:
            GuardUnavailable: the CSV does not match the model's outputs, or names no
                ``explicit`` rating.
        """
        self._session = session
        model_input = session.get_inputs()[0]
        self._input = model_input.name
        side = model_input.shape[1]
        self.side = side if isinstance(side, int) else DEFAULT_SIDE
        self.names, categories = read_tags(tags_path)
        outputs = session.get_outputs()[0].shape[-1]
        if isinstance(outputs, int) and outputs != len(self.names):
            raise GuardUnavailable(f"{tags_path} lists {len(self.names)} tags but the model outputs {outputs}")
        self._feeds = {i: RATING_CATEGORIES[n] for i, (n, c) in enumerate(zip(self.names, categories))
                       if c == RATING_CATEGORY and n in RATING_CATEGORIES}
        if "sexual" not in self._feeds.values():  # it would load and never score nudity: fail closed
            raise GuardUnavailable(f"{tags_path} has no rating tag 'explicit' (category {RATING_CATEGORY}); "
                                   "is it the tagger's own selected_tags.csv?")
        wanted = set(minor_tags)
        self._minor = [i for i, n in enumerate(self.names) if n in wanted]

    def detect(self, images: Sequence[Any]) -> list[Detection]:
        """One `Detection` per RGB uint8 image: ``sexual``, ``suggestive`` and ``minor`` scores,
        plus every tag at or above `TAG_REPORT_MIN`."""
        import numpy as np

        if not images:
            return []
        batch = np.stack([self._preprocess(image) for image in images])
        # Older exports have a fixed batch of 1: run per image then.
        fixed_batch = self._session.get_inputs()[0].shape[0] == 1
        rows = ([self._session.run(None, {self._input: batch[i:i + 1]})[0][0] for i in range(len(batch))]
                if fixed_batch else self._session.run(None, {self._input: batch})[0])
        return [self._detection(np.asarray(row, dtype=np.float64)) for row in rows]

    def _detection(self, probabilities: Any) -> Detection:
        scores: dict[str, float] = {}
        for index, category in self._feeds.items():
            scores[category] = max(scores.get(category, 0.0), float(probabilities[index]))
        scores["minor"] = max((float(probabilities[i]) for i in self._minor), default=0.0)
        tags = {self.names[i]: float(p) for i, p in enumerate(probabilities) if p >= TAG_REPORT_MIN}
        return Detection(NAME, scores, tags=tags)

    def _preprocess(self, image: Any) -> Any:
        import numpy as np
        from PIL import Image

        picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
        side = max(picture.size)
        square = Image.new("RGB", (side, side), PAD_COLOUR)
        square.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
        if side != self.side:
            square = square.resize((self.side, self.side), Image.BICUBIC)
        return np.ascontiguousarray(np.asarray(square, dtype=np.float32)[:, :, ::-1])  # RGB → BGR


def read_tags(path: str | Path) -> tuple[list[str], list[int]]:
    """Read ``selected_tags.csv``: tag names and categories, in model output order.

    Raises:
        GuardUnavailable: missing columns or a non-integer category (message names the line).
    """
    names, categories = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"name", "category"} <= set(reader.fieldnames):
            raise GuardUnavailable(f"{path}: expected columns tag_id,name,category,count")
        for line, row in enumerate(reader, 2):
            try:
                categories.append(int(row["category"]))
            except (TypeError, ValueError):
                raise GuardUnavailable(f"{path}:{line}: category must be an integer") from None
            names.append(row["name"])
    return names, categories


def load() -> WD14Backend:
    """The registry's loader: model and tag list from the weights manager (never downloaded)."""
    return WD14Backend(onnx_session(weights.require(WEIGHTS)), weights.require(TAGS))
