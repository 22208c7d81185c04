"""Hide what a verdict found: pixelate, blur or fill the detected boxes, blur the whole image, or
replace it. Always returns a new array; the input is never modified.

The in-loop preview censor and the final image censor both call `censor_image`, so a preview
never shows more than the final image would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .image_types import Box, Region
from .verdict import Action, Verdict

# Pixelation cells across the shorter side of a box, at most: few enough that nothing is
# recognisable. Cells are at least 2 px, so a small box is never left as it was (1-px cells).
PIXELATE_CELLS = 8
MIN_CELL_PX = 2
# Heavy blur: shrink to this many pixels across the shorter side, then blur back up. A plain
# small-kernel Gaussian leaves shapes readable.
BLUR_CELLS = 6
FILL_COLOUR = (128, 128, 128)  # neutral grey; black boxes read as "something terrible was here"
REPLACEMENT_COLOUR = (128, 128, 128)
DEFAULT_MARGIN = 0.15


def _pixelate(patch: Any) -> Any:
    import cv2

    h, w = patch.shape[:2]
    cell = max(MIN_CELL_PX, math.ceil(min(h, w) / PIXELATE_CELLS))
    small = cv2.resize(patch, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _blur(patch: Any) -> Any:
    import cv2

    h, w = patch.shape[:2]
    # Shrink to at most half the box's side too: a box under BLUR_CELLS px was not shrunk at all.
    across = max(1, min(BLUR_CELLS, min(h, w) // MIN_CELL_PX))
    scale = across / max(1, min(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    kernel = max(3, (min(h, w) // BLUR_CELLS) | 1)
    return cv2.GaussianBlur(smooth, (kernel, kernel), 0)


def _fill(patch: Any) -> Any:
    import numpy as np

    return np.broadcast_to(np.asarray(FILL_COLOUR, dtype=patch.dtype), patch.shape)


def _replace(image: Any) -> Any:
    import numpy as np

    return np.broadcast_to(np.asarray(REPLACEMENT_COLOUR, dtype=image.dtype), image.shape).copy()


# Styles that act on each box, and styles that act on the whole image. Hosts list
# `CENSOR_STYLES` in their settings; the policy's [image] censor_style must be one of them.
REGION_STYLES: dict[str, Callable[[Any], Any]] = {"pixelate": _pixelate, "blur": _blur, "fill": _fill}
IMAGE_STYLES: dict[str, Callable[[Any], Any]] = {"blur_image": _blur, "replace": _replace}
CENSOR_STYLES: tuple[str, ...] = (*REGION_STYLES, *IMAGE_STYLES)


def censor_image(image: Any, target: Verdict | Sequence[Region | Box], style: str = "pixelate",
                 margin: float = DEFAULT_MARGIN) -> Any:
    """A censored copy of `image`.

    Args:
        image (`np.ndarray`): RGB ``uint8`` ``(H, W, 3)``; not modified.
        target (`Verdict` or `Sequence[Region | Box]`): a verdict of the image stage (its regions
            whose category asks for censor or more are hidden), or the boxes to hide.
        style (`str`, *optional*, defaults to ``"pixelate"``): one of `CENSOR_STYLES`.
        margin (`float`, *optional*, defaults to 0.15): border added on every side of a box, as a
            fraction of its width/height. Larger hides more context around a detection.

    Returns:
        `np.ndarray`: a new array. For a verdict: unchanged copy when it asks for less than
        censor; the replacement image when it blocks (a blocked image is never shown, however
        censored); a whole-image blur when it asks for censor but has no box (e.g. only a
        whole-image classifier fired).

    Raises:
        `ValueError`: unknown style, negative margin, or not an RGB uint8 image.
    """
    import numpy as np

    if style not in CENSOR_STYLES:
        raise ValueError(f"unknown censor style '{style}' (styles: {', '.join(CENSOR_STYLES)})")
    if margin < 0:
        raise ValueError(f"censor margin must be ≥ 0, got {margin}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("censor_image needs an RGB uint8 array of shape (H, W, 3)")
    if isinstance(target, Verdict):
        if target.action is Action.BLOCK:
            return _replace(image)
        if target.action < Action.CENSOR:
            return image.copy()
        boxes = censor_boxes(target)
        if not boxes and style in REGION_STYLES:
            return _blur(image)
    else:
        boxes = [t.box if isinstance(t, Region) else tuple(t) for t in target]
    if style in IMAGE_STYLES:
        return IMAGE_STYLES[style](image)
    out = image.copy()
    height, width = image.shape[:2]
    for box in boxes:
        x0, y0, x1, y1 = expand_box(box, margin, width, height)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = REGION_STYLES[style](out[y0:y1, x0:x1])
    return out


def censor_boxes(verdict: Verdict) -> list[Box]:
    """The boxes of `verdict`'s regions whose category's action is censor or more."""
    severe = {r.code for r in verdict.reasons if r.action >= Action.CENSOR}
    return [tuple(r["box"]) for r in verdict.details.get("regions", ())  # type: ignore[misc]
            if r.get("category") in severe]


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """`box` grown by `margin` × its size on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(0, math.floor(x0 - dx)), max(0, math.floor(y0 - dy)),
            min(width, math.ceil(x1 + dx)), min(height, math.ceil(y1 + dy)))
