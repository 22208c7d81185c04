"""Read large images in overlapping tiles, so a 320-px detector does not miss small regions.

NudeNet resizes its input to 320 px: on a 2048² image a 60-px nipple or face becomes 9 px. The
guard runs a tileable backend on the whole image *and* on a grid of overlapping tiles, maps every
tile's boxes back to image pixels and merges duplicates (same label) by NMS. `bench_image_guard`
measures what this buys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .image_types import Box, Detection, Face, ImageBackend, Region

# Same-label boxes merge when they overlap this much (IoU), or when the smaller one lies mostly
# inside the larger (a region cut by a tile edge shows up as a fragment of the whole-image box).
MERGE_IOU = 0.45
MERGE_INSIDE = 0.8
# A tile box this close to a tile edge that lies inside the image is a cut-off fragment: the
# neighbouring tile (objects smaller than the overlap) or the whole-image pass sees it whole.
EDGE_PX = 2


def tile_grid(width: int, height: int, settings: Mapping[str, Any]) -> list[Box]:
    """Tiles for an image of `width` × `height` under the policy's ``[image]`` settings.

    Args:
        width (`int`), height (`int`): image size in pixels.
        settings (`Mapping`): ``tile_min_side``, ``tile_size``, ``tile_overlap``,
            ``max_tiles_per_side``.

    Returns:
        `list[Box]`: ``(x0, y0, x1, y1)`` tiles covering the image, row by row; empty when the
        image is smaller than ``tile_min_side`` (or tiling is off) or one tile would cover it.

    Example:
        >>> len(tile_grid(1024, 1024, {"tile_min_side": 1024, "tile_size": 640, "tile_overlap": 0.25,
        ...                            "max_tiles_per_side": 3}))
        4
    """
    min_side = int(settings["tile_min_side"])
    if min_side <= 0 or max(width, height) < min_side:
        return []
    xs = _spans(width, settings)
    ys = _spans(height, settings)
    if len(xs) * len(ys) <= 1:
        return []
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def _spans(length: int, settings: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Evenly spaced, overlapping [start, end) spans covering 0..length."""
    size = min(int(settings["tile_size"]), length)
    overlap = float(settings["tile_overlap"])
    step = size * (1.0 - overlap)
    count = max(1, math.ceil((length - size * overlap) / step)) if step > 0 else 1
    count = min(count, max(1, int(settings["max_tiles_per_side"])))
    if count == 1:
        return [(0, length)]
    # Grow the tiles when the count is capped, so the grid still covers the image with overlap.
    size = max(size, math.ceil(length / (count - (count - 1) * overlap)))
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(s, s + size) for s in starts]


def detect_tiled(backend: ImageBackend, image: Any, tiles: Sequence[Box]) -> Detection:
    """Run `backend` on `image` and on each tile, in one call; merge into one `Detection`."""
    crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in tiles]
    whole, *parts = backend.detect([image, *crops])
    regions = list(whole.regions)
    faces = list(whole.faces)
    scores = dict(whole.scores)
    height, width = image.shape[:2]
    for tile, part in zip(tiles, parts):
        dx, dy = tile[0], tile[1]
        regions += [Region(r.label, r.score, _shift(r.box, dx, dy), r.category) for r in part.regions
                    if not _cut_off(r.box, tile, width, height)]
        faces += [Face(_shift(f.box, dx, dy), f.score, f.age, f.age_confidence) for f in part.faces
                  if not _cut_off(f.box, tile, width, height)]
    for region in regions:  # tile scores only from boxes that were kept (not cut-off fragments)
        if region.category is not None:
            scores[region.category] = max(region.score, scores.get(region.category, 0.0))
    return Detection(whole.backend, scores, tuple(merge_regions(regions)), tuple(merge_faces(faces)),
                     whole.tags)


def merge_regions(regions: Sequence[Region]) -> list[Region]:
    """Drop duplicates of the same label, keeping the higher score; best first."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: r.score, reverse=True):
        if not any(k.label == region.label and is_duplicate(k.box, region.box) for k in kept):
            kept.append(region)
    return kept


def merge_faces(faces: Sequence[Face]) -> list[Face]:
    """Drop duplicate faces (any detector, any tile), keeping the higher score; best first."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if not any(is_duplicate(k.box, face.box) for k in kept):
            kept.append(face)
    return kept


def is_duplicate(a: Box, b: Box) -> bool:
    """Whether two boxes are the same object: IoU ≥ `MERGE_IOU`, or the smaller is mostly inside."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    if inter == 0:
        return False
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) >= MERGE_IOU or inter / min(area_a, area_b) >= MERGE_INSIDE


def _cut_off(box: Box, tile: Box, width: int, height: int) -> bool:
    """Whether `box` (tile pixels) touches an edge of `tile` that is not an edge of the image."""
    x0, y0, x1, y1 = tile
    return ((x0 > 0 and box[0] <= EDGE_PX) or (y0 > 0 and box[1] <= EDGE_PX)
            or (x1 < width and box[2] >= x1 - x0 - EDGE_PX) or (y1 < height and box[3] >= y1 - y0 - EDGE_PX))


def _shift(box: Box, dx: int, dy: int) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
