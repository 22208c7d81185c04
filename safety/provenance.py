"""The provenance pipeline a host runs when it saves an image, layers in the order that keeps each valid.

1. visible label (pixels), 2. invisible watermark (pixels), 3. implicit label (metadata; its
pixel digest must see the final pixels), 4. C2PA manifest, signed last (it hashes the file bytes).

Works on encoded file bytes (PNG, JPEG, WebP), so a host saves as it always does and passes the
bytes through. Pixel layers re-encode the image but keep every metadata chunk or segment
(ComfyUI `prompt`/`workflow`, A1111 `parameters`, EXIF, ICC, XMP).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import label_containers as lc
from .errors import GuardUnavailable
from .label import AigcRecord, find_labels, pixel_digest, write_label
from .label_containers import MalformedImage
from .label_visible import CORNERS, TEXTS, draw_label
from .watermark import DEFAULT_KEY, DEFAULT_STRENGTH, SSIM_TARGET, embed

if TYPE_CHECKING:
    import numpy as np

    from .policy import Policy

PNG_COMPRESS_LEVEL = 4      # what ComfyUI's SaveImage uses
JPEG_QUALITY = 95
WEBP_QUALITY = 90
_JPEG_ADOBE_HEADER = b"Adobe"           # APP14: colour transform of the stored channels
_JPEG_ICC_HEADER = b"ICC_PROFILE\0"     # APP2, then chunk number and count, then the profile
_ICC_SPACE_OFFSET = 16                  # the profile header's data colour space signature
_ICC_RGB = b"RGB "
_EXIF_ORIENTATION = 0x0112
_JPEG_MPF_HEADER = b"MPF\0"             # APP2: index of a multi-picture JPEG's further pictures


@dataclass(frozen=True)
class ProvenanceOptions:
    """Which layers to write, and with what content.

    Attributes:
        visible: draw the visible label; visible_text (one of label_visible.TEXTS) and visible_corner.
        watermark: embed sdguard's invisible watermark; payload (6 bytes) defaults to the first
            48 bits of SHA-256(content_id), which ties the mark to the implicit label's ProduceID.
        implicit: write the GB 45438 implicit label (producer = ContentProducer, content_id = ProduceID).
            An empty content_id is filled in by with_content_id: the ProduceID of the file's own
            sdguard label when it has one, else a random UUID.
        c2pa: sign a C2PA manifest with the identity in c2pa_identity (folder with cert chain + key,
            which must be there); without one, with sdguard's local identity (created when absent).
    """

    visible: bool = False
    visible_text: str = TEXTS[0]
    visible_corner: str = CORNERS[0]
    watermark: bool = True
    payload: bytes | None = None
    watermark_key: str = DEFAULT_KEY
    watermark_strength: float = DEFAULT_STRENGTH
    watermark_ssim: float = SSIM_TARGET
    implicit: bool = True
    producer: str = ""
    content_id: str = ""
    c2pa: bool = False
    c2pa_identity: Path | None = None

    def __post_init__(self) -> None:
        # Hosts pass folder names as text, and an empty settings box means "none named".
        object.__setattr__(self, "c2pa_identity", Path(self.c2pa_identity) if self.c2pa_identity else None)


def options_from_policy(policy: Policy, **overrides: object) -> ProvenanceOptions:
    """Options from the policy's [label] and [watermark] sections, with keyword overrides."""
    label, mark = policy.section("label"), policy.section("watermark")
    values: dict[str, object] = {
        "visible": label.get("visible", False), "visible_text": label.get("visible_text", TEXTS[0]),
        "visible_corner": label.get("visible_corner", CORNERS[0]), "implicit": label.get("implicit", True),
        "producer": label.get("producer", ""), "c2pa": label.get("c2pa", False),
        "watermark": mark.get("embed", True), "watermark_key": mark.get("key", DEFAULT_KEY),
        "watermark_strength": float(mark.get("strength", DEFAULT_STRENGTH)),
        "watermark_ssim": float(mark.get("ssim_target", SSIM_TARGET)),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ProvenanceOptions(**values)  # type: ignore[arg-type]


def payload_for(content_id: str) -> bytes:
    """The watermark payload tied to a content ID: the first 48 bits of its SHA-256."""
    return hashlib.sha256(content_id.encode("utf-8")).digest()[:6]


def with_content_id(data: bytes, options: ProvenanceOptions) -> ProvenanceOptions:
    """`options` with its content ID filled in when empty.

    A file that already carries an sdguard label (its ReservedCode1 is our pixel digest) keeps that
    label's ProduceID, so re-labelling it (to add a producer, say) keeps the watermark, whose
    payload derives from the ID, tied to the label. Anything else gets a new random UUID.

    Raises:
        MalformedImage: the file is malformed or not a PNG, JPEG or WebP.
    """
    if options.content_id:
        return options
    labelled = [rec for _, rec in find_labels(data) if rec.ProduceID]
    digest = pixel_digest(data) if labelled else ""  # decode only when there is a label to check
    # A label copied onto other pixels (or left on edited ones) names other content: not its ID.
    own = [rec.ProduceID for rec in labelled if rec.ReservedCode1 == digest]
    return replace(options, content_id=own[0] if own else uuid.uuid4().hex)


def apply(data: bytes, options: ProvenanceOptions) -> bytes:
    """Add the requested provenance layers to an encoded image.

    Args:
        data: a PNG, JPEG or WebP file.
        options: which layers, see ProvenanceOptions; an empty content_id is filled in as
            with_content_id does (call it first to learn the ID).

    Returns:
        The new file's bytes.

    Raises:
        MalformedImage: the input is not a well-formed PNG/JPEG/WebP.
        ValueError: the image is too small for the watermark or the visible label, or animated
            and either was asked for; or a JPEG's own XMP leaves no room for the implicit label.
        GuardUnavailable: C2PA was requested but c2pa-python is missing, the identity's key cannot
            be read (the message names its folder), or signing failed.
        FileNotFoundError: options.c2pa_identity lacks the certificate chain or the key.
    """
    fmt = lc.sniff(data)
    options = with_content_id(data, options)
    if options.visible or options.watermark:
        if _frame_count(data) > 1:  # re-encoding one frame would drop the rest of the animation
            raise ValueError("an animated image: the visible label and the watermark are for still images "
                             "(the implicit label and C2PA work on animations)")
        rgb, alpha = decode(data)
        if options.visible:
            rgb, alpha = _draw_visible(rgb, alpha, options, _orientation(data))
        if options.watermark:
            rgb = embed(rgb, options.payload or payload_for(options.content_id), key=options.watermark_key,
                        strength=options.watermark_strength, ssim_target=options.watermark_ssim)
        data = reencode(data, fmt, rgb, alpha)
    if options.implicit:
        data = write_label(data, AigcRecord(ContentProducer=options.producer, ProduceID=options.content_id))
    if options.c2pa:
        from .c2pa_sign import load_identity, load_or_create_identity, sign

        folder = options.c2pa_identity or default_identity_dir()
        chain, key = load_identity(folder) if options.c2pa_identity else load_or_create_identity(folder)
        try:
            data = sign(data, fmt, chain, key, title=f"{options.content_id}.{fmt}")
        except (ValueError, TypeError) as e:  # cryptography on a key it cannot read (TypeError: encrypted)
            raise GuardUnavailable(f"{folder}: the C2PA key cannot be used ({e})") from None
    return data


def _draw_visible(rgb: np.ndarray, alpha: np.ndarray | None, options: ProvenanceOptions,
                  orientation: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The visible label drawn upright in the chosen corner of the image as viewers show it (after
    its EXIF orientation), and over the alpha channel too, so it shows where the image is transparent."""
    import numpy as np
    from PIL import Image

    turn = Image.Transpose
    show = {2: turn.FLIP_LEFT_RIGHT, 3: turn.ROTATE_180, 4: turn.FLIP_TOP_BOTTOM, 5: turn.TRANSPOSE,
            6: turn.ROTATE_270, 7: turn.TRANSVERSE, 8: turn.ROTATE_90}.get(orientation)  # as ImageOps.exif_transpose
    pixels = rgb if alpha is None else np.dstack([rgb, alpha])
    if show is not None:
        pixels = np.asarray(Image.fromarray(pixels).transpose(show))
    pixels = draw_label(pixels, options.visible_text, options.visible_corner)
    if show is not None:  # back to the stored orientation, which the EXIF tag still describes
        back = {turn.ROTATE_90: turn.ROTATE_270, turn.ROTATE_270: turn.ROTATE_90}.get(show, show)
        pixels = np.asarray(Image.fromarray(pixels).transpose(back))
    if alpha is None:
        return np.ascontiguousarray(pixels), None
    return np.ascontiguousarray(pixels[:, :, :3]), np.ascontiguousarray(pixels[:, :, 3])


def _orientation(data: bytes) -> int:
    """The EXIF Orientation tag (1, upright, when absent or unreadable)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block does not stop the label; the file decoded already
        return 1


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB pixels (HxWx3 uint8) and the alpha channel if any.

    16-bit and float images are scaled to 8 bits (``convert("RGB")`` would clip them at 255).

    Raises:
        MalformedImage: PIL cannot decode the file.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .image_guard import pil_pixels

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            pixels = pil_pixels(im)
    except UnidentifiedImageError:  # its message names a BytesIO object, not the file
        raise MalformedImage("not an image format Pillow can read") from None
    except Exception as e:  # PIL raises many types for corrupt files
        raise MalformedImage(f"cannot decode the image ({e})") from None
    if pixels.ndim == 2:  # a scaled 16-bit or float greyscale image
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    alpha = np.ascontiguousarray(pixels[:, :, 3]) if pixels.shape[2] == 4 else None
    return np.ascontiguousarray(pixels[:, :, :3]), alpha


def reencode(original: bytes, fmt: str, rgb: np.ndarray, alpha: np.ndarray | None) -> bytes:
    """Encode new pixels in the original's format, carrying over all its metadata."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(np.dstack([rgb, alpha]) if alpha is not None else rgb, "RGBA" if alpha is not None else "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
        fresh = lc.png_chunks(buf.getvalue())
        pixel = [c for c in fresh if c.kind in lc.PNG_PIXEL_CHUNKS and c.kind != b"IHDR"]
        old = lc.png_chunks(original)
        out, placed = [fresh[0]], False
        for c in old[1:]:
            if c.kind in lc.PNG_PIXEL_CHUNKS:
                if c.kind == b"IDAT" and not placed:
                    out += pixel
                    placed = True
                continue
            out.append(c)
        return lc.png_bytes(out)
    if fmt == "jpeg":
        im.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=_jpeg_subsampling(original))
        fresh, tail = lc.jpeg_segments(buf.getvalue())
        meta = _jpeg_metadata(lc.jpeg_segments(original)[0])
        return lc.jpeg_bytes(meta + [(m, p) for m, p in fresh if not (0xE0 <= m <= 0xEF or m == 0xFE)], tail)
    old_chunks = lc.webp_chunks(original)
    lossless = any(c.kind == b"VP8L" for c in old_chunks)
    extra = {k: v for k, v in _webp_info(original).items() if v}
    im.save(buf, "WEBP", lossless=lossless, quality=100 if lossless else WEBP_QUALITY, **extra)
    data = buf.getvalue()
    xmp = lc.webp_xmp(old_chunks)
    if xmp:
        data = lc.webp_bytes(lc.webp_set_xmp(lc.webp_chunks(data), xmp, im.size, alpha is not None))
    return data


def _jpeg_metadata(segments: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The original's APPn and COM segments that still hold for the re-encoded stream (YCbCr, RGB).

    An Adobe APP14 segment names the old stream's colour transform (0: RGB or CMYK stored as is),
    and an ICC profile for CMYK or grey describes channels the new stream does not have: kept, either
    makes decoders read the new pixels in the wrong colours. A multi-picture (MPF) index points at
    pictures after the first one's end, which the re-encoded stream no longer carries.
    """
    icc = next((p for m, p in segments if m == 0xE2 and p.startswith(_JPEG_ICC_HEADER)
                and p[len(_JPEG_ICC_HEADER):][:1] == b"\x01"), b"")  # chunk 1 of the profile holds its header
    icc_space = icc[len(_JPEG_ICC_HEADER) + 2 + _ICC_SPACE_OFFSET:][:4]
    kept = []
    for marker, payload in segments:
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            continue
        if marker == 0xEE and payload.startswith(_JPEG_ADOBE_HEADER):
            continue
        if marker == 0xE2 and payload.startswith(_JPEG_ICC_HEADER) and icc_space != _ICC_RGB:
            continue
        if marker == 0xE2 and payload.startswith(_JPEG_MPF_HEADER):
            continue
        kept.append((marker, payload))
    return kept


def _jpeg_subsampling(data: bytes) -> int:
    """Pillow's chroma subsampling code (0: 4:4:4, 1: 4:2:2, 2: 4:2:0) for re-encoding a JPEG as it was
    stored: halving the colour detail of a 4:4:4 file changes it far more than the pixel layers do."""
    from PIL import Image, JpegImagePlugin

    with Image.open(io.BytesIO(data)) as im:
        sampling = JpegImagePlugin.get_sampling(im)
    return sampling if sampling >= 0 else 0  # grey, CMYK or RGB stored as is: every channel was full size


def _frame_count(data: bytes) -> int:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            # A multi-picture JPEG (a phone's HDR gain map, a 3D pair) shows as its first picture and
            # re-encodes as that picture alone (see _jpeg_metadata); only animations are refused.
            return 1 if im.format == "MPO" else int(getattr(im, "n_frames", 1))
    except Exception as e:  # PIL raises many types for corrupt files
        raise MalformedImage(f"cannot decode the image ({e})") from None


def _webp_info(data: bytes) -> dict[str, bytes]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return {"exif": im.info.get("exif", b""), "icc_profile": im.info.get("icc_profile", b"")}


def default_identity_dir() -> Path:
    """Where the local C2PA identity lives: $SDGUARD_HOME/c2pa, else ~/.sdguard/c2pa."""
    import os

    return Path(os.environ.get("SDGUARD_HOME") or Path.home() / ".sdguard") / "c2pa"
