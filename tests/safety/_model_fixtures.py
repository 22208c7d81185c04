"""Builders for the model-stage tests: tiny safetensors files, kohya metadata, a fake term engine."""

from __future__ import annotations

import io
import json
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1}


def safetensors_bytes(metadata: dict[str, str] | None = None,
                      tensors: dict[str, tuple[str, list[int]]] | None = None, *, fill: int = 7) -> bytes:
    """A valid safetensors file: tensors laid out back to back, data bytes all `fill`."""
    tensors = {"lora_unet_down.weight": ("F16", [4, 2]), "lora_unet_up.weight": ("F16", [2, 4])} \
        if tensors is None else tensors
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + bytes([fill]) * offset


def write_safetensors(path: Path, metadata: dict[str, str] | None = None, **kwargs) -> Path:
    path.write_bytes(safetensors_bytes(metadata, **kwargs))
    return path


def kohya_metadata(tags: dict[str, int], images: int = 100, **extra: str) -> dict[str, str]:
    """Metadata as kohya's train_network.py writes it: one dataset folder holding `images` images."""
    folder = "10_subject"
    return {
        "ss_output_name": "subject_v1",
        "ss_num_train_images": str(images * 10),  # kohya counts repeats here
        "ss_dataset_dirs": json.dumps({folder: {"n_repeats": 10, "img_count": images}}),
        "ss_tag_frequency": json.dumps({folder: tags}),
        **extra,
    }


@dataclass(frozen=True)
class Hit:
    category: str
    term: str
    span: tuple[int, int]
    field: str


class FakeLexicon:
    """The shape of `prompt_lexical.Lexicon`: ``scan(text, field) -> list[TermHit]`` (whole words)."""

    TERMS = {
        "nude": "sexual", "nsfw": "sexual", "pussy": "sexual", "lingerie": "suggestive",
        "loli": "minor", "child": "minor", "schoolgirl": "minor", "adult": "adult",
        "taylor swift": "real_person", "ultraman": "ip_character", "gore": "violence",
    }

    def __init__(self, terms: dict[str, str] | None = None, fingerprint: str | None = "fake-1"):
        self.terms = dict(self.TERMS if terms is None else terms)
        self.calls = 0
        if fingerprint is not None:
            self.fingerprint = fingerprint
        alternatives = "|".join(sorted(map(re.escape, self.terms), key=len, reverse=True))
        self._pattern = re.compile(rf"\b({alternatives})\b", re.IGNORECASE)

    def scan(self, text: str, field: str) -> list[Hit]:
        self.calls += 1
        return [Hit(self.terms[m.group(1).lower()], m.group(1).lower(), m.span(), field)
                for m in self._pattern.finditer(text)]


def damaged_zip(path: Path, damage: str) -> Path:
    """A torch-style zip whose data.pkl cannot be read: flagged encrypted, or its compressed bytes
    garbled (deflate, bzip2, or the LZMA properties)."""
    method = {"encrypted": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
              "lzma": zipfile.ZIP_LZMA}[damage]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", method) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": list(range(200))}, protocol=2))
    data = bytearray(archive.getvalue())
    start = 30 + len("archive/data.pkl")  # the member's bytes follow its 30-byte local header and name
    if damage == "encrypted":
        data[6] |= 1  # general purpose flag bit 0, in the local header and the central directory
        data[data.find(b"PK\x01\x02") + 8] |= 1
    elif damage == "lzma":
        data[start + 4] = 0xFF  # lc/lp/pb out of range
    else:
        for i in range(start, start + 12):
            data[i] = 0xFF
    path.write_bytes(bytes(data))
    return path
