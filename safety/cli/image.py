"""`sdguard check-image`: the image stage from the command line.

Exit status: 2 when any input could not be read or a censored copy could not be written (each
such file gets an ``error`` object; the others are still checked and reported), else 3 when any
image is blocked, else 0. A --censor-to folder that cannot be created or written is a usage error
before anything is checked.
Censored copies are written only for images whose verdict is ``censor``, and only under
``--censor-to``; originals are never modified, and a blocked image is never copied anywhere.
Multi-frame files (GIF, animated WebP) are checked frame by frame and reported as their worst
frame; they get no censored copy. An image with transparency is judged over white, over black and
by its colour channels alone; its censored copy is the over-white composite, opaque.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from ..audit import hash_input
from ..censor import censor_image
from ..image_guard import as_pixels, as_rgb, check_images
from ..policy import Policy
from ..verdict import Action, Verdict
from ._common import (EXIT_BLOCKED, EXIT_OK, EXIT_USAGE, UsageError, add_audit_arg, add_policy_args,
                      audit_from_args, find_files, policy_from_args, print_json, read_input,
                      report_error, write_new_file)

# Extensions picked up when walking a folder (files named on the command line are always read).
# One Pillow cannot decode here (HEIC without a plugin) is then reported unreadable, not skipped.
IMAGE_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".heic", ".heif",
                  ".bmp", ".gif", ".tif", ".tiff")
# Formats a censored copy is written in, as its original was (Pillow writes RGB to each).
COPY_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-image", help="check images (files or folders) against the policy",
                       description="Check image files, or every image under folders, against the policy. "
                                   "Prints one result per image; exit 0 none blocked, 3 some blocked, "
                                   "2 some file unreadable (the rest are still checked).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (walked recursively)")
    p.add_argument("--censor-to", metavar="DIR",
                   help="write censored copies of images whose verdict is 'censor' here "
                        "(mirroring folder structure); blocked images are never written")
    add_policy_args(p)
    add_audit_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = policy_from_args(args)
    files = find_files(args.paths, IMAGE_SUFFIXES)
    if not files:
        raise UsageError("no image files found in " + ", ".join(args.paths))
    censor_dir = Path(args.censor_to) if args.censor_to else None
    if censor_dir is not None:
        _probe_folder(censor_dir)
    log = audit_from_args(args, policy)
    failed = blocked = False
    for path, relative in files:
        try:
            data = read_input(path)
            worst, verdict, frames, first = _check_frames(data, policy)
        except (OSError, ValueError) as e:
            failed = True
            report_error(path, e, args.json)
            continue
        blocked = blocked or verdict.blocked
        if log is not None:
            log.record(verdict, input_hash=hash_input(data), host=policy.section("audit")["host"],
                       extra={"path": str(path)})
        written, write_error = None, None
        if censor_dir is not None and verdict.action is Action.CENSOR and first is not None:
            try:
                written = _write_censored(as_rgb(first), verdict, policy, censor_dir / relative)
            except OSError as e:  # the verdict still stands and the other files are still checked
                write_error = e
        _report(path, verdict, written, worst if frames > 1 else None, frames, args.json)
        if write_error is not None:
            failed = True
            report_error(censor_dir / relative, write_error, args.json)
    if failed:
        return EXIT_USAGE
    return EXIT_BLOCKED if blocked else EXIT_OK


def _probe_folder(folder: Path) -> None:
    """Create the --censor-to folder and make sure a file can be written there, before anything is
    checked: a run must not stop halfway on it.

    Raises:
        `UsageError`: it is not a folder, or cannot be created or written.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--censor-to {folder}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"--censor-to {folder}: {e.strerror or e}") from None


def _check_frames(data: bytes, policy: Policy) -> tuple[int, Verdict, int, Any]:
    """Check every frame of an image file as it is decoded: only one frame is held at a time, so
    a small file of many large frames cannot exhaust memory.

    Returns:
        `(worst, verdict, frames, first)`: the index and verdict of the worst frame (the first of
        equals), the number of frames, and the only frame's pixels for a one-frame file (else
        ``None``: an animation gets no censored copy).

    Raises:
        `ValueError`: not an image Pillow can decode (frames before the bad one are not reported).
    """
    worst, verdict, count, first = 0, None, 0, None
    for index, pixels in enumerate(_frames(data)):
        frame_verdict = check_images([pixels], policy)[0]
        if verdict is None or frame_verdict.action.severity > verdict.action.severity:
            worst, verdict = index, frame_verdict
        count, first = index + 1, pixels if index == 0 else None
    if verdict is None:
        raise ValueError("image has no frames")
    return worst, verdict, count, first


def _frames(data: bytes) -> Iterator[Any]:
    """Each frame as a uint8 array (RGB, or RGBA where it has transparency, for `check_images` to
    judge each way it may be seen), EXIF orientation applied (boxes match what people see).

    Raises:
        `ValueError`: not an image Pillow can decode.
    """
    import io

    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            for frame in ImageSequence.Iterator(picture):
                yield as_pixels(ImageOps.exif_transpose(frame))
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a readable image ({e})") from None


def _write_censored(pixels: Any, verdict: Verdict, policy: Policy, target: Path) -> Path:
    """Write a censored copy with `write_new_file`: atomically, never over an existing file, with
    the mode the umask gives. It keeps the original's format where that is one of `COPY_FORMATS`,
    else it is a PNG."""
    from PIL import Image

    settings = policy.section("image")
    censored = censor_image(pixels, verdict, settings["censor_style"], settings["censor_margin"])
    file_format = Image.registered_extensions().get(target.suffix.lower())
    if file_format not in COPY_FORMATS:  # e.g. PSD, XPM: Pillow reads them but cannot write RGB there
        file_format, target = "PNG", target.with_suffix(".png")
    return write_new_file(target, lambda f: Image.fromarray(censored).save(f, format=file_format))


def _report(path: Path, verdict: Verdict, written: Path | None, frame: int | None, frames: int,
            as_json: bool) -> None:
    if as_json:
        out: dict[str, Any] = {"path": str(path), **verdict.to_dict()}
        if frame is not None:
            out.update(frame=frame, frames=frames)
        if written is not None:
            out["censored_copy"] = str(written)
        print_json(out)
        return
    print(f"{verdict.action.value.upper():7} {path}" + (f" -> {written}" if written else ""))
    for reason in verdict.to_dict()["reasons"]:
        print(f"  {reason}")
