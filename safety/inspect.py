"""Inspector: every provenance signal in an image file, each with how much it is worth.

Reads the GB 45438 implicit label (and checks its pixel digest), the C2PA manifest, sdguard's
watermark, the legacy Stable Diffusion invisible-watermark marks (SD v1 "StableDiffusionV1",
SDXL 0xB3EC907BB19E; weak evidence: that scheme flips bits even without any attack), and the
generation metadata hosts write (ComfyUI `prompt`/`workflow`, A1111 `parameters`).
Other formats Pillow decodes (GIF, BMP, TIFF, ...) are read for the marks in their pixels; their
label and C2PA are reported as not checked, since sdguard writes and reads those only in PNG, JPEG and WebP.
Absence of every signal is not proof that an image is not AI-generated: metadata is stripped by
most platforms and any invisible mark falls to regeneration.
"""

from __future__ import annotations

import io
from typing import Any

from . import label_containers as lc
from .errors import GuardUnavailable
from .label import read_label
from .provenance import decode, payload_for
from .watermark import DEFAULT_KEY, detect

SDXL_BITS = 0xB3EC907BB19E
SDXL_LENGTH = 48
SD_V1_TEXT = b"StableDiffusionV1"
# dwtDct reads back 80-90 % of bits on unattacked images, so these are agreement thresholds, not
# exact matches. Chance of reaching them on an unmarked image: P(Binom(48,.5) >= 39) ≈ 7e-6 and
# P(Binom(136,.5) >= 102) ≈ 2e-9.
SDXL_MIN_AGREEMENT = 0.8
SD_V1_MIN_AGREEMENT = 0.75
LEGACY_MIN_SIDE = 256      # invisible-watermark (and so watermark_legacy) refuses smaller images
# Above this the legacy check is skipped: it takes ~35 bytes of memory a pixel (3 GB for 9400²), and
# images this large are upscaled, which the dwtDct marks do not survive. 4096² = 1024² upscaled 4x.
LEGACY_MAX_PIXELS = 4096 * 4096
HOST_KEYS = ("prompt", "workflow", "parameters")
METADATA_FORMATS = ("png", "jpeg", "webp")
C2PA_VALID_STATES = ("Valid", "Trusted")   # c2pa-python's ValidationState names; "Invalid" is tampered


def inspect_bytes(data: bytes, *, key: str = DEFAULT_KEY, legacy: bool = True) -> dict[str, Any]:
    """Everything the file says about its provenance.

    Args:
        data: an image file: PNG, JPEG or WebP for every signal; any other format Pillow decodes
            for the watermarks and EXIF (its label and C2PA come back as ``{"not_checked": why}``).
        key: the sdguard watermark key.
        legacy: also look for the SD v1 / SDXL invisible-watermark marks (numpy reader in
            watermark_legacy; invisible-watermark itself is not needed).

    Returns:
        {"format", "width", "height", "implicit_label", "c2pa", "watermark", "legacy_watermarks",
         "host_metadata", "evidence": [names of signals found]}.

    Raises:
        MalformedImage: Pillow cannot decode it, or a PNG, JPEG or WebP is malformed.
    """
    rgb, _ = decode(data)
    fmt = _format(data)
    mark = detect(rgb, key=key).to_dict()
    if fmt in METADATA_FORMATS:
        label: dict[str, Any] = read_label(data).to_dict()
        c2pa = _c2pa_summary(data, fmt)
        if mark["detected"] and label["record"]:
            mark["matches_label"] = mark["payload"] == payload_for(label["record"]["ProduceID"]).hex()
    else:
        label = c2pa = {"not_checked": f"sdguard reads labels and C2PA in PNG, JPEG and WebP, not {fmt.upper()}"}
    report: dict[str, Any] = {
        "format": fmt, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        "implicit_label": label, "c2pa": c2pa, "watermark": mark,
        "legacy_watermarks": _legacy(rgb) if legacy else None,
        "host_metadata": host_metadata(data, fmt),
    }
    report["evidence"] = _evidence(report)
    return report


def host_metadata(data: bytes, fmt: str) -> dict[str, int]:
    """Generation metadata the hosts write, as {name: length in characters} (content not repeated)."""
    from PIL import Image

    found: dict[str, int] = {}
    if fmt == "png":
        texts = lc.png_text(lc.png_chunks(data))
        found = {k: len(texts[k]) for k in HOST_KEYS if k in texts}
    with Image.open(io.BytesIO(data)) as im:
        comment = im.getexif().get_ifd(0x8769).get(0x9286)  # Exif IFD -> UserComment (A1111 JPEG/WebP)
    if comment:
        found["exif_user_comment"] = len(comment)
    return found


def _format(data: bytes) -> str:
    """'png', 'jpeg', 'webp' from the magic bytes, else Pillow's name for the format ('gif', 'bmp', ...)."""
    try:
        return lc.sniff(data)
    except lc.MalformedImage:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:  # decode() has already opened it
            return (im.format or "unknown").lower()


def _c2pa_summary(data: bytes, fmt: str) -> dict[str, Any] | None:
    try:
        from .c2pa_sign import summarize
        return summarize(data, fmt)
    except GuardUnavailable as e:
        return {"unavailable": str(e)}


def _legacy(rgb: Any) -> dict[str, Any]:
    """Bit agreement with the SD v1 and SDXL dwtDct marks (weak evidence)."""
    import numpy as np

    if min(rgb.shape[:2]) < LEGACY_MIN_SIDE:
        return {"checked": False, "reason": f"image smaller than {LEGACY_MIN_SIDE} px"}
    if rgb.shape[0] * rgb.shape[1] > LEGACY_MAX_PIXELS:
        return {"checked": False, "reason": f"image larger than {LEGACY_MAX_PIXELS:,} pixels (upscaled: "
                                            f"the legacy marks do not survive that)"}
    from .watermark_legacy import decode_bits

    sdxl_ref = np.array([int(b) for b in format(SDXL_BITS, f"0{SDXL_LENGTH}b")])
    v1_ref = np.unpackbits(np.frombuffer(SD_V1_TEXT, dtype=np.uint8))
    # watermark_legacy reproduces invisible-watermark's dwtDct decoder bit for bit, without opencv/torch.
    sdxl = float(np.mean(decode_bits(rgb, SDXL_LENGTH) == sdxl_ref))
    v1 = float(np.mean(decode_bits(rgb, len(v1_ref)) == v1_ref))
    return {"checked": True, "strength": "weak",
            "sdxl": {"found": sdxl >= SDXL_MIN_AGREEMENT, "bit_agreement": round(sdxl, 3)},
            "sd_v1": {"found": v1 >= SD_V1_MIN_AGREEMENT, "bit_agreement": round(v1, 3)}}


def _evidence(report: dict[str, Any]) -> list[str]:
    found = []
    label = report["implicit_label"]
    if label.get("record"):
        found.append("implicit_label" + ("" if label["integrity"] == "ok" else f" ({label['integrity']})"))
    c2pa = report["c2pa"]
    if c2pa and "actions" in c2pa:
        # A manifest whose hashes no longer match the file is a claim about other content: it
        # is reported, qualified, like a label whose pixel digest does not match.
        state = c2pa.get("validation_state")
        found.append("c2pa" if state in C2PA_VALID_STATES else f"c2pa ({str(state).lower()})")
    if report["watermark"]["detected"]:
        found.append("watermark")
    legacy = report["legacy_watermarks"] or {}
    found += [f"legacy_{name} (weak)" for name in ("sdxl", "sd_v1") if legacy.get(name, {}).get("found")]
    if report["host_metadata"]:
        found.append("host_metadata")
    return found
