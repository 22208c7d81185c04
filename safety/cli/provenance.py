"""`sdguard watermark embed|detect`, `sdguard label`, `sdguard inspect`: provenance from the command line.

Outputs are written atomically (temporary file in the same folder, then rename), so a malformed
input or a failed signature leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .._files import write_atomic
from ..errors import SdguardError
from ..label_containers import MalformedImage, sniff
from ._common import (EXIT_BLOCKED, EXIT_OK, EXIT_USAGE, UsageError, add_policy_args, policy_from_args,
                      print_json, read_input, report_error)

REQUIRE_CHOICES = ("any", "label", "watermark", "c2pa")
SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def register(sub: argparse._SubParsersAction) -> None:
    wm = sub.add_parser("watermark", help="embed or detect sdguard's invisible watermark",
                        description="Embed or detect sdguard's invisible watermark (48-bit payload).")
    wm_sub = wm.add_subparsers(dest="action", required=True, metavar="ACTION")
    emb = wm_sub.add_parser("embed", help="watermark one image (PNG, JPEG or WebP)")
    emb.add_argument("input")
    emb.add_argument("output")
    emb.add_argument("--payload", metavar="HEX", help="up to 12 hex digits (default: random)")
    add_policy_args(emb)
    emb.add_argument("--json", action="store_true", help="print JSON")
    emb.set_defaults(run=run_embed)
    det = wm_sub.add_parser("detect", help="look for the watermark; exit 3 when any file has none, 2 when any "
                                                   "cannot be read (the others are still reported)")
    det.add_argument("paths", nargs="+", metavar="PATH")
    add_policy_args(det)
    det.add_argument("--json", action="store_true", help="print one JSON object per file")
    det.set_defaults(run=run_detect)

    lab = sub.add_parser("label", help="add the AI-content labels (implicit GB 45438, optional visible, C2PA)",
                         description="Add provenance layers in the order that keeps each valid: visible "
                                     "label, watermark, implicit label (XMP TC260:AIGC), C2PA last.")
    lab.add_argument("input")
    lab.add_argument("output")
    lab.add_argument("--visible", action="store_true", default=None, help="draw the visible label")
    lab.add_argument("--watermark", action="store_true",
                     help="also embed the invisible watermark (only when asked: it re-encodes the pixels; "
                          "the policy's [watermark] embed is for the hosts' saved images)")
    lab.add_argument("--producer", metavar="NAME", help="ContentProducer (provider name or TC260 code)")
    lab.add_argument("--content-id", metavar="ID",
                     help="ProduceID (default: the file's own sdguard label's, else a random UUID)")
    lab.add_argument("--c2pa", action="store_true", default=None,
                     help="sign a C2PA manifest (local self-signed identity unless --c2pa-identity)")
    lab.add_argument("--c2pa-identity", metavar="DIR", help="folder with c2pa-cert-chain.pem and c2pa-key.pem")
    add_policy_args(lab)
    lab.add_argument("--json", action="store_true", help="print JSON")
    lab.set_defaults(run=run_label)

    ins = sub.add_parser("inspect", help="show every provenance signal in image files",
                         description="Implicit label and its integrity, C2PA, sdguard watermark, legacy "
                                     "SD watermarks, host metadata. Exit 2 when any file cannot be read "
                                     "(the others are still reported).")
    ins.add_argument("paths", nargs="+", metavar="PATH")
    ins.add_argument("--no-legacy", action="store_true", help="skip the legacy SD v1/SDXL watermark check (weak evidence)")
    ins.add_argument("--require", choices=REQUIRE_CHOICES,
                     help="exit 3 when a file lacks this signal ('any': lacks every signal; a label or "
                          "C2PA manifest the file no longer matches does not count)")
    ins.add_argument("--json", action="store_true", help="print one JSON object per file")
    ins.set_defaults(run=run_inspect)


def run_embed(args: argparse.Namespace) -> int:
    from ..provenance import ProvenanceOptions, apply
    from ..watermark import parse_payload

    try:
        payload = parse_payload(args.payload) if args.payload else os.urandom(6)
    except ValueError as e:
        raise UsageError(str(e)) from None
    mark = policy_from_args(args).section("watermark")
    options = ProvenanceOptions(watermark=True, payload=payload, watermark_key=mark["key"],
                                watermark_strength=mark["strength"], watermark_ssim=mark["ssim_target"],
                                implicit=False)
    data = _read(args.input)
    try:
        _check_suffix(args.output, sniff(data))
        out = apply(data, options)
    except (MalformedImage, ValueError) as e:
        raise UsageError(f"{args.input}: {e}") from None
    _write_atomic(args.output, out)
    if args.json:
        print_json({"path": args.output, "payload": payload.hex()})
    else:
        print(f"{args.output}: watermarked, payload {payload.hex()}")
    return EXIT_OK


def run_detect(args: argparse.Namespace) -> int:
    from ..provenance import decode
    from ..watermark import detect

    key = policy_from_args(args).section("watermark")["key"]
    unreadable = missing = False
    for path in args.paths:
        try:
            rgb = decode(read_input(path))[0]
        except (OSError, MalformedImage) as e:
            unreadable = True
            report_error(path, e, args.json)
            continue
        result = detect(rgb, key=key)
        missing |= not result.detected
        if args.json:
            print_json({"path": path, "detected": result.detected, "payload": result.payload,
                        "confidence": result.confidence})
        else:
            print(f"{path}: " + (f"marked, payload {result.payload} (confidence {result.confidence:.2f})"
                                 if result.detected else "not marked"))
    return EXIT_USAGE if unreadable else EXIT_BLOCKED if missing else EXIT_OK


def run_label(args: argparse.Namespace) -> int:
    from ..provenance import apply, options_from_policy, with_content_id

    policy = policy_from_args(args)
    overrides = {"visible": args.visible, "watermark": args.watermark, "producer": args.producer,
                 "content_id": args.content_id, "c2pa": args.c2pa, "c2pa_identity": args.c2pa_identity}
    options = options_from_policy(policy, **overrides)
    data = _read(args.input)
    try:
        _check_suffix(args.output, sniff(data))
        options = with_content_id(data, options)  # the ID to report: the file's own, else a new one
        out = apply(data, options)
    except (MalformedImage, ValueError) as e:
        raise UsageError(f"{args.input}: {e}") from None
    _write_atomic(args.output, out)
    layers = [name for name, on in (("visible", options.visible), ("watermark", options.watermark),
                                    ("implicit_label", options.implicit), ("c2pa", options.c2pa)) if on]
    if args.json:
        print_json({"path": args.output, "content_id": options.content_id, "layers": layers})
    else:
        print(f"{args.output}: {', '.join(layers) or 'nothing'} (content id {options.content_id})")
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    from ..inspect import inspect_bytes

    unreadable = missing = False
    for path in args.paths:
        try:
            report = inspect_bytes(read_input(path), legacy=not args.no_legacy)
        except (OSError, MalformedImage, SdguardError) as e:
            unreadable = True
            report_error(path, e, args.json)
            continue
        missing |= args.require is not None and not _has(report, args.require)
        if args.json:
            print_json({"path": path, **report})
        else:
            _print_report(path, report)
    return EXIT_USAGE if unreadable else EXIT_BLOCKED if missing else EXIT_OK


def _has(report: dict, signal: str) -> bool:
    evidence = report["evidence"]
    if signal == "any":  # a label or manifest that the file no longer matches is no signal
        return any(e != "implicit_label (mismatch)" and not e.startswith("c2pa (") for e in evidence)
    if signal == "label":
        return report["implicit_label"].get("integrity") == "ok"
    return signal in evidence


def _print_report(path: str, r: dict) -> None:
    print(f"{path}: {r['format']} {r['width']}x{r['height']}")
    label = r["implicit_label"]
    if "not_checked" in label:
        print(f"  implicit label: not checked ({label['not_checked']})")
    elif label["record"]:
        rec = label["record"]
        print(f"  implicit label (GB 45438, {label['location']}): Label={rec['Label']} "
              f"producer={rec['ContentProducer']!r} id={rec['ProduceID']!r} integrity={label['integrity']}"
              + (f" [{label['count']} labels: the standard allows one]" if label["count"] > 1 else ""))
    else:
        print("  implicit label: none")
    c2pa = r["c2pa"]
    if c2pa is None:
        print("  C2PA: none")
    elif "actions" in c2pa:
        actions = ", ".join(f"{a['action']} ({(a['digitalSourceType'] or '').rsplit('/', 1)[-1]})"
                            for a in c2pa["actions"])
        print(f"  C2PA: {c2pa['validation_state']}, signer {c2pa['signer']!r}, actions: {actions}"
              + (f"; issues: {', '.join(c2pa['validation_errors'])}" if c2pa["validation_errors"] else ""))
    else:
        print(f"  C2PA: {c2pa.get('error') or c2pa.get('unavailable') or 'not checked'}")
    wm = r["watermark"]
    print("  sdguard watermark: " + (f"payload {wm['payload']} (confidence {wm['confidence']:.2f})"
                                     if wm["detected"] else "not found"))
    legacy = r["legacy_watermarks"]
    if legacy and legacy.get("checked"):
        print(f"  legacy SD watermarks (weak evidence): SDXL {legacy['sdxl']['bit_agreement']:.2f}, "
              f"SD v1 {legacy['sd_v1']['bit_agreement']:.2f} bit agreement"
              + (" -> found" if legacy["sdxl"]["found"] or legacy["sd_v1"]["found"] else ""))
    elif legacy:
        print(f"  legacy SD watermarks: not checked ({legacy['reason']})")
    if r["host_metadata"]:
        print("  host metadata: " + ", ".join(f"{k} ({n} chars)" for k, n in r["host_metadata"].items()))
    print(f"  evidence: {', '.join(r['evidence']) or 'none (absence proves nothing)'}")


def _check_suffix(output: str, fmt: str) -> None:
    """The output keeps the input's format (re-encoding would cost quality and metadata), so a name
    promising another format is refused rather than written as a misnamed file."""
    if SUFFIX_FORMATS.get(Path(output).suffix.lower()) != fmt:
        wanted = " or ".join(sorted(s for s, f in SUFFIX_FORMATS.items() if f == fmt))
        raise UsageError(f"{output}: the output keeps the input's format ({fmt}); name it {wanted}")


def _read(path: str) -> bytes:
    try:
        return read_input(path)
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None


def _write_atomic(path: str, data: bytes) -> None:
    try:
        write_atomic(path, lambda f: f.write(data))
    except OSError as e:  # its own message may name the temporary file, which the user never named
        raise UsageError(f"{path}: cannot write ({e.strerror})") from None
