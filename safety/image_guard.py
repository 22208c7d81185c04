"""The image stage: every decoded image (and, via the in-loop monitor, every preview) is judged by
an ensemble of detectors, and the policy decides.

Backends (``[image] backends`` in the policy) each return a `Detection`: scores per category,
regions, faces. A backend feeds a category only where the policy sets a threshold for that
(category, backend) pair. Faces found by the detectors are handed to face backends (age), whose
under-18 probability is a `minor` cue; `decide()` derives minor ∧ sexual → minor_sexual. Every
image of a batch is checked on its own. A required backend that cannot load or throws blocks
the image (`guard_unavailable`); an optional one is skipped with a note.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import image_backends
from .errors import GuardUnavailable
from .image_tiles import detect_tiled, merge_faces, tile_grid
from .image_types import Detection, Face, ImageBackend, Region
from .policy import STAGES, Policy, load_policy
from .verdict import MALFORMED_INPUT, Action, Finding, Reason, Verdict, decide, is_finite_number, unavailable

logger = logging.getLogger("sdguard.image")

STAGE = "image"
# A category the policy gives no threshold for this backend: the backend does not feed it.
_NOT_FED = math.inf

# The views of a partly transparent image, in the order `views` returns them; a verdict on such an
# image names the view it was judged on in ``details["view"]``.
ALPHA_VIEWS = ("over_white", "over_black", "colour_channels")


def check_image(image: Any, policy: Policy | None = None, *, stage: str = STAGE,
                backends: Mapping[str, ImageBackend] | None = None) -> Verdict:
    """Check one image.

    Args:
        image (`np.ndarray` or `PIL.Image.Image`): RGB ``uint8`` ``(H, W, 3)``; greyscale, RGBA
            and float arrays in 0..1 are converted. One with transparency is judged in each of its
            `views` (over white, over black, colour channels alone); the worst verdict is returned.
        policy (`Policy`, *optional*, defaults to the ``public`` profile).
        stage (`str`, *optional*, defaults to ``"image"``): ``"preview"`` for in-loop previews
            (the policy may act differently there).
        backends (`Mapping[str, ImageBackend]`, *optional*): already-loaded backends by name;
            names not given come from the process-wide registry.

    Returns:
        `Verdict`; its details carry ``regions``, ``faces`` (with ages), per-backend ``scores``,
        ``size``, ``tiles``, and for a partly transparent image the ``view`` judged. An image that cannot be read is blocked (``malformed_input``).

    Raises:
        `ValueError`: `stage` is not one of the policy's stages.

    Example:
        >>> import numpy as np
        >>> check_image(np.full((64, 64, 3), 200, np.uint8)).action  # doctest: +SKIP
        <Action.ALLOW: 'allow'>
    """
    return check_images([image], policy, stage=stage, backends=backends)[0]


def check_images(images: Sequence[Any], policy: Policy | None = None, *, stage: str = STAGE,
                 backends: Mapping[str, ImageBackend] | None = None,
                 only: Sequence[str] | None = None) -> list[Verdict]:
    """Check each image of a batch (or each frame of a video) on its own; one verdict each, in order.

    Args and Returns: as `check_image`, per item, plus:
        only (`Sequence[str]`, *optional*): run just these backends instead of the policy's
            ``[image]`` ensemble (the in-loop monitor's ``[monitor] backends``); those listed in
            ``[image] required`` stay required. The subset must keep a feeder of each protected
            cue (`load_policy` checks that for ``[monitor] backends``).
    """
    if stage not in STAGES:  # the verdict would name a stage no policy action applies to
        raise ValueError(f"stage '{stage}' is not one of {', '.join(STAGES)}")
    policy = policy or load_policy()
    settings = policy.section("image")
    # A required backend missing from `backends` still runs: leaving it out must not open the gate.
    names = list(only) if only is not None else [
        *settings["backends"], *(n for n in settings["required"] if n not in settings["backends"])]
    required = set(settings["required"]) & set(names)
    loaded, failures = load_backends(names, backends)
    missing = sorted(name for name in failures if name in required)
    if missing:
        what = ", ".join(f"image backend '{n}'" for n in missing)
        error = "; ".join(failures[n] for n in missing)
        return [unavailable(stage, policy, what, error) for _ in images]
    skipped = dict(failures)
    return [_check_one(image, policy, stage, loaded, required, skipped) for image in images]


def load_backends(names: Sequence[str], given: Mapping[str, ImageBackend] | None = None
                  ) -> tuple[dict[str, ImageBackend], dict[str, str]]:
    """Load the named backends once, e.g. before a sampling loop that checks every preview.

    Args:
        names (`Sequence[str]`): backend names, usually ``policy.section("image")["backends"]``.
        given (`Mapping[str, ImageBackend]`, *optional*): instances to use instead of the registry.

    Returns:
        `(loaded, failures)`: backends by name, and the error message of each that failed to load.
    """
    loaded: dict[str, ImageBackend] = {}
    failures: dict[str, str] = {}
    for name in names:
        try:
            loaded[name] = given[name] if given and name in given else image_backends.get_backend(name)
        except GuardUnavailable as e:
            failures[name] = str(e)
            logger.warning("%s", e)
    return loaded, failures


def _check_one(image: Any, policy: Policy, stage: str, backends: Mapping[str, ImageBackend],
               required: set[str], skipped: Mapping[str, str]) -> Verdict:
    try:
        shown = views(image)
    except (TypeError, ValueError) as e:
        return malformed(stage, policy, str(e))
    if len(shown) == 1:
        return _check_pixels(shown[0], policy, stage, backends, required, skipped, {})
    # A picture can hide in the alpha channel: judge every way a viewer may see it; the worst wins
    # (the first of equals, so the over-white view, which censored copies are made from).
    verdicts = [_check_pixels(pixels, policy, stage, backends, required, skipped, {"view": view})
                for view, pixels in zip(ALPHA_VIEWS, shown)]
    return max(verdicts, key=lambda v: v.action.severity)


def _check_pixels(pixels: Any, policy: Policy, stage: str, backends: Mapping[str, ImageBackend],
                  required: set[str], skipped: Mapping[str, str], extra: Mapping[str, Any]) -> Verdict:
    settings = policy.section("image")
    height, width = pixels.shape[:2]
    tiles = tile_grid(width, height, settings)
    skipped = dict(skipped)
    detections: list[Detection] = []
    # Detectors first, then the backends that judge the faces they found.
    order = sorted(backends.items(), key=lambda item: bool(getattr(item[1], "needs_faces", False)))
    for name, backend in order:
        try:
            detections.append(_judgeable(_run(backend, pixels, tiles, detections, settings)))
        except Exception as e:  # any failure of a detector means this image was not checked
            error = f"{type(e).__name__}: {e}"
            if name in required:
                logger.error("image backend %s failed: %s", name, error)
                return unavailable(stage, policy, f"image backend '{name}'", error)
            logger.warning("optional image backend %s failed, skipped: %s", name, error)
            skipped[name] = error
    details: dict[str, Any] = {"size": [width, height], "tiles": len(tiles), **extra}
    if skipped:
        details["skipped"] = skipped
    if not detections:  # nothing named, or every optional backend failed: the image was not checked
        return unavailable(stage, policy, "the image check", "no image backend ran"
                           + (f" ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else ""),
                           details)
    findings, regions = _findings(detections, policy)
    details["regions"] = [r.to_dict() for r in regions]
    details["faces"] = [f.to_dict() for f in _final_faces(detections)]
    details["scores"] = {d.backend: {k: round(float(v), 4) for k, v in d.scores.items()} for d in detections}
    return decide(stage, findings, policy, details)


def _run(backend: ImageBackend, pixels: Any, tiles: Sequence[Any], earlier: Sequence[Detection],
         settings: Mapping[str, Any]) -> Detection:
    if getattr(backend, "needs_faces", False):
        min_side = int(settings["min_face_px"])
        faces = [f for f in merge_faces([f for d in earlier for f in d.faces])
                 if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_side]
        return backend.detect([pixels], faces=[tuple(faces)])[0]  # type: ignore[call-arg]
    if tiles and getattr(backend, "tileable", False):
        return detect_tiled(backend, pixels, tiles)
    return backend.detect([pixels])[0]


def _judgeable(detection: Detection) -> Detection:
    """A detection whose every score (and face age) is a finite number; else it raises, and the
    backend counts as failed (an fp16 overflow gives NaN, which no threshold would ever catch)."""
    numbers = [*detection.scores.values(), *(r.score for r in detection.regions),
               *(f.age for f in detection.faces if f.age is not None)]
    bad = [v for v in numbers if not is_finite_number(v)]
    if bad:
        raise ValueError(f"it returned {bad[0]!r} where a finite score belongs")
    return detection


def _findings(detections: Sequence[Detection], policy: Policy) -> tuple[list[Finding], list[Region]]:
    """One finding per (backend, category) score the policy has a threshold for, and the regions
    that made a finding fire (what the censor hides)."""
    findings: list[Finding] = []
    regions: list[Region] = []
    for detection in detections:
        for category, score in detection.scores.items():
            threshold = policy.threshold(category, detection.backend, _NOT_FED)
            if threshold == _NOT_FED:
                continue
            hits = [r for r in detection.regions if r.category == category and r.score >= threshold]
            regions += hits
            findings.append(Finding(category, float(score), detection.backend, threshold,
                                    model=detection.backend, detail=_evidence(category, detection, hits)))
    return findings, sorted(regions, key=lambda r: r.score, reverse=True)


def _evidence(category: str, detection: Detection, hits: Sequence[Region]) -> str | None:
    """What a moderator needs to see the finding: the labels that fired, or the youngest face."""
    if hits:
        labels = sorted({r.label for r in hits})
        return f"{', '.join(labels)}; {len(hits)} region{'s' if len(hits) > 1 else ''}"
    aged = [f for f in detection.faces if f.age is not None]
    if category == "minor" and aged:
        youngest = min(aged, key=lambda f: f.age or 0.0)
        return f"face at {list(youngest.box)}, estimated age {youngest.age:.0f}"
    return None


def _final_faces(detections: Sequence[Detection]) -> list[Face]:
    """Every face once; where an age backend judged it, its aged copy."""
    aged = [f for d in detections for f in d.faces if f.age is not None]
    plain = [f for d in detections for f in d.faces if f.age is None]
    return aged + [f for f in merge_faces(plain) if not any(f.box == a.box for a in aged)]


def as_rgb(image: Any) -> Any:
    """The image as a viewer sees it: a C-contiguous RGB ``uint8`` array ``(H, W, 3)``; one with
    transparency is composited over white (the first of `views`).

    Raises:
        `TypeError`: not an array or PIL image.
        `ValueError`: wrong shape, empty, or float values outside 0..1 (the message says which).
    """
    return views(image)[0]


def views(image: Any) -> list[Any]:
    """Every way a viewer may see the image, as RGB ``uint8`` arrays ``(H, W, 3)``: just the
    image when it is opaque; for one with transparency (an ``(H, W, 4)`` array, PIL modes
    RGBA/LA/PA, a palette or colour key with ``transparency``), it composited
    over white, over black, and its colour channels as they are (what a tool that drops alpha
    shows), in the order of `ALPHA_VIEWS`. A picture drawn only in the alpha channel shows on a
    background, not in the colour channels, so each view is judged.

    Raises:
        `TypeError`, `ValueError`: as `as_rgb`.
    """
    import numpy as np

    pixels = as_pixels(image)
    if pixels.shape[2] == 3:
        return [pixels]
    colour, alpha = pixels[:, :, :3], pixels[:, :, 3:]
    # Integer "over": (c·a + bg·(255 − a)) / 255, rounded; uint16 holds 255·255.
    weight = alpha.astype(np.uint16)
    covered = colour * weight
    over_white = ((covered + 255 * (255 - weight) + 127) // 255).astype(np.uint8)
    over_black = ((covered + 127) // 255).astype(np.uint8)
    return [over_white, over_black, np.ascontiguousarray(colour)]


def as_pixels(image: Any) -> Any:
    """The image as a C-contiguous ``uint8`` array: ``(H, W, 3)`` RGB, or ``(H, W, 4)`` RGBA when
    it has transparency (alpha below 255 somewhere). `check_image` and `views` take it as it is:
    decode once with this, judge it, and make a censored copy of its `as_rgb`.

    Raises:
        `TypeError`, `ValueError`: as `as_rgb`.
    """
    import numpy as np

    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        image = pil_pixels(image)
    try:
        array = np.asarray(image)
    except Exception as e:
        raise TypeError(f"not an image: {type(image).__name__} ({e})") from None
    if array.dtype == object or array.ndim not in (2, 3):
        raise ValueError(f"image must be an (H, W, 3) array, got shape {array.shape} of {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image must be an (H, W, 3) array, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "fiub":
            raise ValueError(f"image pixels must be uint8 or float in 0..1, got {array.dtype}")
        if array.dtype.kind == "f":
            if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
                raise ValueError("float image pixels must be finite and within 0..1")
            array = np.round(array * 255.0)
        elif array.min() < 0 or array.max() > 255:
            raise ValueError(f"integer image pixels must be within 0..255, got {array.dtype}")
        array = array.astype(np.uint8)
    if array.shape[2] == 4 and array[:, :, 3].min() == 255:  # an alpha that hides nothing
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def is_wide_mode(mode: str) -> bool:
    """Whether a Pillow mode holds more than 8 bits a sample (16-bit and 32-bit integer, float)."""
    return mode.startswith("I;16") or mode in ("I", "F")


def pil_pixels(image: Any) -> Any:
    """A PIL image's pixels as ``uint8``: RGB ``(H, W, 3)``, RGBA ``(H, W, 4)`` when its mode has
    alpha or it has a ``transparency`` key, ``(H, W)`` for 16-bit and float greyscale. Modes wider
    than 8 bits are scaled here, because ``convert("RGB")`` clips them at 255: a 16-bit greyscale image
    turned almost white and a float one black, so neither was judged as it looks."""
    import numpy as np

    if image.mode in ("RGBA", "RGBa", "LA", "PA") or (
            "transparency" in image.info and image.mode in ("1", "P", "L", "RGB")):
        return np.asarray(image.convert("RGBA"))
    if not is_wide_mode(image.mode):
        return np.asarray(image.convert("RGB"))
    values = np.asarray(image, dtype=np.float32)  # exact for 16-bit samples, half float64's memory
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"mode {image.mode} image has NaN or infinite pixels")
    top = values.max() if values.size else 0.0
    if image.mode == "F" and top <= 1.0:
        scale = 255.0                       # floats in 0..1
    elif image.mode.startswith("I;16") or top > 255:
        scale = 255.0 / 65535.0             # 16-bit samples (older Pillow opens 16-bit PNG as "I")
    else:
        scale = 1.0
    return np.clip(np.round(values * scale), 0, 255).astype(np.uint8)


def malformed(stage: str, policy: Policy, error: str) -> Verdict:
    """The verdict for an input that is not a readable image: blocked, with the reason."""
    message = (f"{MALFORMED_INPUT}: not a readable image ({error}); "
               "blocked because an unchecked image never passes")
    reason = Reason(MALFORMED_INPUT, Action.BLOCK, message)
    return Verdict(stage, Action.BLOCK, {}, (reason,), policy.fingerprint, policy.name, {})
