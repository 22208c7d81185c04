"""GB 45438-2025 implicit label: the `AIGC` record as XMP `TC260:AIGC` in PNG, JPEG and WebP.

One label per file: writing replaces any earlier `TC260:AIGC` property (and a PNG text chunk named
`AIGC`, the other form seen in the wild) instead of adding a second one. Other metadata — ComfyUI
`prompt`/`workflow`, A1111 `parameters`, EXIF, ICC, other XMP properties — is kept byte for byte.

`ReservedCode1` carries ``sha256:`` + base64url(SHA-256 of the decoded pixels), which the
inspector recomputes. For PNG the check is exact; for JPEG and WebP it holds as long as the same
decoder (libjpeg-turbo / libwebp in Pillow) reads the file, because lossy decoders may differ by a
level here and there.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from dataclasses import asdict, dataclass, replace
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from . import _json
from . import label_containers as lc
from .label_containers import MalformedImage

logger = logging.getLogger("sdguard.label")

TC260_NS = "http://www.tc260.org.cn/ns/AIGC/1.0/"
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
DIGEST_PREFIX = "sha256:"
LABEL_AI_GENERATED = "1"
_AIGC_TEXT_KEYWORD = b"AIGC"
# Properties we own in a merged XMP packet, by namespace: removed from the old packet before ours goes in.
_OWN_PROPERTIES = ((TC260_NS, "AIGC"), (IPTC_EXT_NS, "DigitalSourceType"))
_EMPTY_DESCRIPTION = re.compile(r"<rdf:Description\s+rdf:about=(?:\"\"|'')(?:\s+xmlns:\w+=(?:\"[^\"]*\"|'[^']*'))*\s*/>")


@dataclass(frozen=True)
class AigcRecord:
    """The `AIGC` record of GB 45438-2025 Annex E (field names as the standard spells them)."""

    Label: str = LABEL_AI_GENERATED
    ContentProducer: str = ""
    ProduceID: str = ""
    ReservedCode1: str = ""
    ContentPropagator: str = ""
    PropagateID: str = ""
    ReservedCode2: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AigcRecord:
        """Parse the JSON string, also in the wrapped form ``{"AIGC": {...}}``.

        Raises:
            ValueError: not valid JSON (the message says why, e.g. nested too deeply), or not a
                JSON object.
        """
        try:
            obj = _json.loads(text)
        except ValueError as e:
            raise ValueError(f"AIGC label is not valid JSON ({e.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("AIGC"), dict):
            obj = obj["AIGC"]
        if not isinstance(obj, dict):
            raise ValueError("AIGC label is not a JSON object")
        known = {k: str(v) for k, v in obj.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class LabelReport:
    """What a file says about itself.

    Attributes:
        record: the AIGC fields, or None when the file has no implicit label.
        location: where it was found ("xmp", "png-text"), or None.
        count: how many implicit labels the file holds (the standard wants exactly one).
        integrity: "ok", "mismatch", "no-digest" (ReservedCode1 is not ours) or "absent".
    """

    record: dict[str, str] | None
    location: str | None
    count: int
    integrity: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pixel_digest(data: bytes) -> str:
    """``sha256:`` + base64url of SHA-256 over the decoded RGB pixels (with their size) of an image file.

    Images wider than 8 bits a sample (16-bit, 32-bit int, float) are hashed in their own mode
    instead (mode, size and samples), because RGB conversion clips them at 255 and so would miss edits.

    Raises:
        MalformedImage: PIL cannot decode the file.
    """
    from PIL import Image

    from .image_guard import is_wide_mode

    try:
        with Image.open(io.BytesIO(data)) as im:
            if is_wide_mode(im.mode):
                header, pixels = f"{im.width}x{im.height}:{im.mode}:", im.tobytes()
            else:  # what every label written so far hashes: keep it, or they would stop verifying
                rgb = im.convert("RGB")
                header, pixels = f"{rgb.width}x{rgb.height}:", rgb.tobytes()
    except Exception as e:  # PIL raises many types for corrupt files
        raise MalformedImage(f"cannot decode the image ({e})") from None
    h = hashlib.sha256(header.encode())
    h.update(pixels)
    return DIGEST_PREFIX + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def build_xmp(record: AigcRecord, existing: str | None = None) -> str:
    """An XMP packet carrying `TC260:AIGC` and the IPTC digital source type.

    Args:
        existing: a packet already in the file; its other properties are kept.
    """
    description = (f'<rdf:Description rdf:about="" xmlns:TC260="{TC260_NS}" xmlns:Iptc4xmpExt="{IPTC_EXT_NS}" '
                   f'TC260:AIGC={quoteattr(record.to_json())} '
                   f'Iptc4xmpExt:DigitalSourceType="{TRAINED_ALGORITHMIC_MEDIA}"/>')
    if existing and "</rdf:RDF>" in existing and _parses(existing):
        stripped = _EMPTY_DESCRIPTION.sub("", _own_properties(existing).sub("", existing))
        merged = stripped.replace("</rdf:RDF>", description + "</rdf:RDF>", 1)
        if _parses(merged) and len(_xmp_records(merged)) == 1:  # ours alone: the standard allows one label
            return merged
        logger.warning("could not merge into the existing XMP packet; replacing it")
    elif existing and existing.strip():
        # One packet per file: an unreadable one (no reader could use it either) gives way to the label.
        logger.warning("the existing XMP packet does not parse or holds no rdf:RDF; replacing it")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'{description}</rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def write_label(data: bytes, record: AigcRecord) -> bytes:
    """The file with its implicit label set to `record`, ReservedCode1 filled with the pixel digest.

    Args:
        data: a PNG, JPEG or WebP file.
        record: the label; its ReservedCode1 is replaced.

    Returns:
        The new file's bytes (pixels untouched).

    Raises:
        MalformedImage: the file is malformed or not one of the three formats.
        ValueError: a JPEG whose own XMP leaves no room for the label in one APP1 segment.
    """
    record = replace(record, ReservedCode1=pixel_digest(data))
    fmt = lc.sniff(data)
    if fmt == "png":
        chunks = lc.png_chunks(data)
        xmp = build_xmp(record, lc.png_text(chunks).get(lc.XMP_PNG_KEYWORD.decode()))
        return lc.png_bytes(lc.png_set_xmp(chunks, xmp, drop_keywords=(_AIGC_TEXT_KEYWORD,)))
    if fmt == "jpeg":
        segments, tail = lc.jpeg_segments(data)
        return lc.jpeg_bytes(lc.jpeg_set_xmp(segments, build_xmp(record, lc.jpeg_xmp(segments))), tail)
    chunks = lc.webp_chunks(data)
    size, alpha = _size_and_alpha(data)
    return lc.webp_bytes(lc.webp_set_xmp(chunks, build_xmp(record, lc.webp_xmp(chunks)), size, alpha))


def read_label(data: bytes) -> LabelReport:
    """Find the implicit label(s) in a file and check ReservedCode1 against the pixels.

    Raises:
        MalformedImage: the file is malformed or not one of the three formats.
    """
    found = find_labels(data)
    if not found:
        return LabelReport(None, None, 0, "absent")
    where, record = found[0]
    if not record.ReservedCode1.startswith(DIGEST_PREFIX):
        integrity = "no-digest"
    else:
        integrity = "ok" if record.ReservedCode1 == pixel_digest(data) else "mismatch"
    return LabelReport(asdict(record), where, len(found), integrity)


def find_labels(data: bytes) -> list[tuple[str, AigcRecord]]:
    """Every implicit label in a file, as (location, record), without checking the pixel digest.

    Raises:
        MalformedImage: the file is malformed or not one of the three formats.
    """
    fmt = lc.sniff(data)
    texts: dict[str, str] = {}
    if fmt == "png":
        chunks = lc.png_chunks(data)
        texts = lc.png_text(chunks)
        xmp = texts.get(lc.XMP_PNG_KEYWORD.decode())
    elif fmt == "jpeg":
        xmp = lc.jpeg_xmp(lc.jpeg_segments(data)[0])
    else:
        xmp = lc.webp_xmp(lc.webp_chunks(data))
    found = [("xmp", rec) for rec in _xmp_records(xmp)] if xmp else []
    if _AIGC_TEXT_KEYWORD.decode() in texts:
        try:
            found.append(("png-text", AigcRecord.from_json(texts[_AIGC_TEXT_KEYWORD.decode()])))
        except ValueError as e:
            logger.warning("PNG text chunk 'AIGC' ignored: %s", e)
    return found


def _xmp_records(xmp: str) -> list[AigcRecord]:
    """Every TC260:AIGC value in an XMP packet (attribute or element form)."""
    try:
        root = ElementTree.fromstring(_strip_xpacket(xmp))
    except ElementTree.ParseError:
        logger.warning("XMP packet does not parse; implicit label ignored")
        return []
    tag = f"{{{TC260_NS}}}AIGC"
    values = [el.get(tag) for el in root.iter() if el.get(tag) is not None]
    values += [el.text or "" for el in root.iter(tag)]
    records = []
    for value in values:
        try:
            records.append(AigcRecord.from_json(value))
        except ValueError as e:
            logger.warning("TC260:AIGC ignored: %s", e)
    return records


def _own_properties(xmp: str) -> re.Pattern[str]:
    """The attributes and elements of `xmp` that hold a property we own, whatever prefix the
    packet binds to its namespace (another tool may write ``tc:AIGC`` for ``TC260:AIGC``).

    `xmp` must parse (see _parses).
    """
    prefixes = {(uri, prefix) for _, (prefix, uri) in
                ElementTree.iterparse(io.StringIO(_strip_xpacket(xmp)), events=("start-ns",))}
    names = [f"{re.escape(prefix)}:{name}" for uri, name in _OWN_PROPERTIES
             for bound_uri, prefix in prefixes if bound_uri == uri and prefix]
    if not names:
        return re.compile(r"(?!)")  # nothing to remove
    alternatives = "|".join(names)
    return re.compile(rf"""\s(?:{alternatives})\s*=\s*(?:"[^"]*"|'[^']*')|<({alternatives})\b[^>]*>.*?</\1\s*>""",
                      re.S)


def _strip_xpacket(xmp: str) -> str:
    return re.sub(r"<\?xpacket[^>]*\?>", "", xmp).strip().lstrip("\ufeff")


def _parses(xmp: str) -> bool:
    try:
        ElementTree.fromstring(_strip_xpacket(xmp))
    except ElementTree.ParseError:
        return False
    return True


def _size_and_alpha(data: bytes) -> tuple[tuple[int, int], bool]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size, im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    except Exception as e:  # PIL raises many types for corrupt files
        raise MalformedImage(f"cannot decode the image ({e})") from None
