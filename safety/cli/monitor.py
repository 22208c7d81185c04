"""`sdguard preview-latent`: decode saved latents the way the in-loop monitor does, and classify them.

For debugging host adapters: is x0 in the space the decoders expect, does the family match, does
TAESD load, what does the preview stage decide. Reads ComfyUI ``.latent`` files (SaveLatent),
safetensors dumps of x0 (any tensor names) and ``.npy`` arrays; never pickles.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path
from typing import Any

from ..audit import hash_input
from ..verdict import Action
from ._common import (UsageError, add_audit_arg, add_policy_args, audit_from_args, exit_status,
                      policy_from_args, print_json, write_new_file)

# ComfyUI SaveLatent: the latent (raw VAE space) and a marker; files without the marker are the
# old format, which stored SD1.5 latents already multiplied by 0.18215 (internal space).
COMFY_LATENT_KEY = "latent_tensor"
COMFY_FORMAT_MARKER = "latent_format_version_0"
# Internal latents of every family have roughly unit spread; raw SD/SDXL latents spread ≈ 5-8.
RAW_STD_HINT = 3.0
INTERNAL_STD_HINT = 0.35
NPY_FLOAT_SIZES = (2, 4, 8)  # bytes per item of the .npy float types torch can hold


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preview-latent", help="decode latents (x0) as the in-loop monitor does and classify them",
        description="Decode latents with the monitor's preview decoder and run the preview check on "
                    "each batch item. Exit 0: nothing blocked; 3: something blocked; 2: bad input.")
    p.add_argument("latent", help="a .latent / .safetensors file (every tensor, or --key) or a .npy array")
    p.add_argument("--family", required=True, help="model family: sd15, sdxl, sd3, flux, wan21, hunyuan_video")
    p.add_argument("--decoder", choices=("auto", "linear", "taesd"),
                   help="preview decoder (default: the policy's [monitor] decoder)")
    p.add_argument("--space", choices=("auto", "internal", "raw"), default="auto",
                   help="latent space of the file: 'internal' = what sampler callbacks pass (x0), "
                        "'raw' = VAE space (ComfyUI LATENT outputs); auto: raw for ComfyUI .latent, "
                        "else internal")
    p.add_argument("--key", help="only this tensor of a safetensors file")
    p.add_argument("--taesd-dir", action="append", default=[], metavar="DIR",
                   help="folder holding the TAESD decoder (repeatable)")
    p.add_argument("--model-root", action="append", default=[], metavar="DIR",
                   help="ComfyUI or WebUI folder whose models/vae_approx or models/VAE-taesd to search")
    p.add_argument("--out", metavar="DIR",
                   help="write the previews as PNG (censored where the verdict censors; blocked "
                        "previews are never written)")
    add_policy_args(p)
    add_audit_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per batch item")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:  # the decoders need it; say so plainly
        raise UsageError("preview-latent needs torch (pip install torch, CPU build is enough)")
    from ..latent_formats import latent_format
    from ..latent_preview import make_decoder
    from ..preview_check import censor_preview, check_latent, latent_bytes

    try:
        fmt = latent_format(args.family)
    except ValueError as e:
        raise UsageError(str(e)) from None
    policy = policy_from_args(args)
    tensors = read_latents(Path(args.latent), args.key)
    prepared = []
    for key, (tensor, space) in tensors.items():
        space = space if args.space == "auto" else args.space
        try:
            fmt.check_shape(tuple(tensor.shape))
        except ValueError as e:
            raise UsageError(f"{args.latent} [{key}]: {e}") from None
        prepared.append((key, fmt.process_in(tensor.float()) if space == "raw" else tensor.float(), space))
    decoder = make_decoder(fmt, args.decoder or policy.section("monitor")["decoder"],
                           search_dirs=args.taesd_dir, model_roots=args.model_root)
    log = audit_from_args(args, policy)
    out_dir = Path(args.out) if args.out else None
    verdicts, reports = [], []
    for key, x0, space in prepared:
        result = check_latent(x0, policy, decoder)
        for item, verdict in enumerate(result.verdicts):
            verdicts.append(verdict)
            if log is not None:
                log.record(verdict, input_hash=hash_input(latent_bytes(x0[item])),
                           host=policy.section("audit")["host"],
                           extra={"file": str(args.latent), "key": key, "item": item, "family": fmt.family})
            written = None
            if out_dir is not None and result.previews and not verdict.blocked:
                frame = result.previews[item][0]
                if verdict.action is Action.CENSOR:
                    frame = censor_preview(frame, verdict, policy)
                written = _write_png(out_dir, Path(args.latent).stem, key, item, frame)
            report = _report(args, fmt.family, decoder.name, key, item, x0[item], space, verdict,
                             result.previews[item][0].shape[:2] if result.previews else None, written)
            reports.append(report)
    for report in reports:  # printed only once everything was checked: no half output on errors
        if args.json:
            print_json(report)
        else:
            _print_text(report)
    return exit_status(verdicts)


def read_latents(path: Path, key: str | None) -> dict[str, tuple[Any, str]]:
    """The tensors of `path` with their default space, read in full before anything is checked."""
    import torch

    if not path.is_file():  # mapped and seeked, so a regular file
        raise UsageError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if path.suffix == ".npy":
        import numpy as np

        try:
            # Mapped, not read: a header whose shape promises more than the file holds is refused
            # before anything is allocated.
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: not a .npy array ({e})") from None
        # torch holds 16-, 32- and 64-bit floats only (not longdouble, which is 80 or 128 bits,
        # or named apart from float64 where it has 64).
        if array.dtype.kind != "f" or array.dtype.itemsize not in NPY_FLOAT_SIZES:
            raise UsageError(f"{path}: a latent holds float16, float32 or float64, this array holds {array.dtype}")
        # Native byte order: torch cannot hold a big-endian array.
        tensors = {"array": torch.from_numpy(np.array(array, dtype=f"=f{array.dtype.itemsize}"))}
        _check_latents(path, tensors)
        return {"array": (tensors["array"], "internal")}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise UsageError(f"{path}: not a safetensors file ({e})") from None
    if COMFY_LATENT_KEY in tensors:
        space = "raw" if COMFY_FORMAT_MARKER in tensors else "internal"
        tensors = {COMFY_LATENT_KEY: tensors[COMFY_LATENT_KEY]}
    else:
        space = "internal"
    if key is not None:
        if key not in tensors:
            raise UsageError(f"{path}: no tensor '{key}' (tensors: {', '.join(tensors)})")
        tensors = {key: tensors[key]}
    latents = {k: t for k, t in tensors.items() if t.ndim >= 4}
    if not latents:
        raise UsageError(f"{path}: no 4-D or 5-D tensor (tensors: {', '.join(tensors) or 'none'})")
    _check_latents(path, latents)
    return {k: (t, space) for k, t in latents.items()}


def _check_latents(path: Path, tensors: dict[str, Any]) -> None:
    """Refuse what no sampler hands over: integer, bool or complex tensors, and empty ones (a batch
    of 0 would print nothing and exit 0, which reads as "checked, clean")."""
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise UsageError(f"{path} [{key}]: a latent holds real floats, this tensor holds {t.dtype}")
        if t.numel() == 0:
            raise UsageError(f"{path} [{key}]: empty tensor (shape {list(t.shape)})")


def _report(args: argparse.Namespace, family: str, decoder: str, key: str, item: int, x0: Any, space: str,
            verdict: Any, size: tuple[int, int] | None, written: Path | None) -> dict[str, Any]:
    std = float(x0.std()) if x0.numel() > 1 else 0.0
    # Statistics are of the latent as decoded, i.e. after a raw → internal conversion.
    stats = {"shape": list(x0.shape), "space": "raw→internal" if space == "raw" else space,
             "mean": round(float(x0.mean()), 4),
             "std": round(std, 4), "min": round(float(x0.min()), 4), "max": round(float(x0.max()), 4)}
    hint = None
    if space == "internal" and std > RAW_STD_HINT:
        hint = f"std {std:.2f} is large for an internal latent: is it raw VAE space? try --space raw"
    elif space == "raw" and std < INTERNAL_STD_HINT:
        hint = f"std {std:.2f} is small for a raw VAE latent: is it already internal? try --space internal"
    out: dict[str, Any] = {"file": args.latent, "key": key, "item": item, "family": family,
                           "decoder": decoder, "latent": stats, "hint": hint,
                           "preview_size": list(size) if size else None,
                           "preview": str(written) if written else None}
    out.update(verdict.to_dict())
    return out


def _print_text(report: dict[str, Any]) -> None:
    stats = report["latent"]
    shape = "x".join(str(n) for n in stats["shape"])
    print(f"{report['key']}[{report['item']}] {report['action'].upper()}  ({report['decoder']}, "
          f"latent {shape} {stats['space']} std {stats['std']})")
    for reason in report["reasons"]:
        print(f"  {reason}")
    if report["hint"]:
        print(f"  hint: {report['hint']}")
    if report["preview"]:
        print(f"  preview: {report['preview']}")


def _write_png(folder: Path, stem: str, key: str, item: int, image: Any) -> Path:
    """A new PNG in `folder` (``-1``, ``-2``... where the name is taken; nothing is overwritten)."""
    from PIL import Image

    safe_key = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
    return write_new_file(folder / f"{stem}_{safe_key}_{item}.png",
                          lambda f: Image.fromarray(image).save(f, format="PNG"))
