"""Robustness benchmark for sdguard's invisible watermark.

    python benchmarks/bench_watermark.py            # default run, a few minutes on one core
    python benchmarks/bench_watermark.py --fp 5000  # more unmarked images/crops for the false-detection count

Image set (offline, honest about what it is): the colour and greyscale sample images that ship in
scikit-image (`skimage.data`: astronaut, coffee, retina, hubble, brick, grass, moon, ...) at their
own size and upscaled to a 1024 px short side (smooth, like SD output), plus synthetic
"natural-ish" images (gradients, 1/f noise textures, shapes, text, sensor noise) at SD sizes.
No photographs of people beyond the astronaut sample; not a substitute for a real photo corpus.
Needs scikit-image (bench only: pip install scikit-image).

Prints: attacks x (detection rate with the full payload, mean bit accuracy of the 80 message bits
before the CRC), PSNR/SSIM at 1024², embed/detect time on the 1024² images (CPU time of this
process and wall time, single-threaded; the machine may be shared: take timings alone on it),
and false detections on unmarked images and crops.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

# The speed target is for one CPU: keep BLAS single-threaded (set before numpy loads). On a shared
# machine a multi-threaded BLAS also spins on busy cores, which inflates both CPU and wall time.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sdguard import watermark as wm  # noqa: E402
from sdguard import watermark_detect as wd  # noqa: E402
from sdguard import watermark_ecc as ecc  # noqa: E402

SD_SIZES = [(512, 512), (768, 512), (1024, 1024), (1024, 768), (832, 1216), (1536, 640)]


# --- image set ----------------------------------------------------------------------------------

def synthetic(seed: int, h: int, w: int) -> np.ndarray:
    """A synthetic image: gradient base plus one of 1/f texture, shapes, text or sensor noise."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    img = rng.uniform(0, 255, 3) + rng.uniform(-150, 150, 3) * (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    kind = seed % 5
    if kind in (1, 3):
        f2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2
        amp = 1 / np.maximum(f2, 1e-6) ** rng.uniform(0.8, 1.1)
        for c in range(3):
            n = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(h, w))) * amp))
            img[..., c] += n / n.std() * rng.uniform(10, 50)
    if kind in (2, 3, 4):
        layer, mask = Image.new("RGB", (w, h)), Image.new("L", (w, h))
        d, dm = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
        for i in range(int(rng.integers(3, 15))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            box = [x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))]
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (d.ellipse if i % 2 else d.rectangle)(box, fill=colour)
            (dm.ellipse if i % 2 else dm.rectangle)(box, fill=255)
        if kind == 4:
            for i in range(40):
                xy = (int(rng.integers(0, w - 100)), int(rng.integers(0, h - 20)))
                d.text(xy, f"Lorem ipsum dolor {i}", fill=(0, 0, 0))
                dm.text(xy, f"Lorem ipsum dolor {i}", fill=255)
        a = np.asarray(mask)[..., None] / 255
        img = img * (1 - a) + np.asarray(layer) * a
    if kind == 0:
        img += rng.normal(0, rng.uniform(1, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def sample_images() -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled samples (>= 256 px), as RGB uint8."""
    from skimage import data

    out = []
    for name in ("astronaut", "brick", "camera", "cat", "cell", "clock", "coffee", "coins", "colorwheel",
                 "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "retina",
                 "rocket", "shepp_logan_phantom"):
        try:
            a = np.asarray(getattr(data, name)())
        except Exception:  # samples that need a download are skipped
            continue
        if a.dtype != np.uint8:
            a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        a = np.ascontiguousarray(a[..., :3])
        if min(a.shape[:2]) >= wm.MIN_SHORT_SIDE:
            out.append((name, a))
    return out


def image_set(n_synthetic: int) -> list[tuple[str, np.ndarray]]:
    images = []
    for name, a in sample_images():
        images.append((name, a))
        h, w = a.shape[:2]
        s = 1024 / min(h, w)
        images.append((f"{name}@1024", np.asarray(Image.fromarray(a).resize((round(w * s), round(h * s)), Image.BICUBIC))))
    for i in range(n_synthetic):
        h, w = SD_SIZES[i % len(SD_SIZES)]
        images.append((f"synthetic{i}", synthetic(i, h, w)))
    return images


# --- attacks ------------------------------------------------------------------------------------

def encode(a: np.ndarray, fmt: str, **kw: object) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, **kw)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def resize(a: np.ndarray, f: float) -> np.ndarray:
    h, w = a.shape[:2]
    return np.asarray(Image.fromarray(a).resize((round(w * f), round(h * f)), Image.BICUBIC))


def crop(a: np.ndarray, rng: np.random.Generator, area: float) -> np.ndarray:
    """Random-position crop keeping `area` of the image, with a random aspect."""
    h, w = a.shape[:2]
    fw = rng.uniform(area, 1.0)
    ch, cw = round(h * area / fw), round(w * fw)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return a[y:y + ch, x:x + cw]


def scale(a: np.ndarray, gain: float, around_mean: bool) -> np.ndarray:
    m = a.mean() if around_mean else 0.0
    return np.clip((a.astype(np.float32) - m) * gain + m, 0, 255).astype(np.uint8)


REQUIRED = {
    "none": lambda a, r: a,
    "jpeg q70": lambda a, r: encode(a, "JPEG", quality=70),
    "resize 0.5x": lambda a, r: resize(a, 0.5),
    "crop 80% area": lambda a, r: crop(a, r, 0.8),
    "brightness +20%": lambda a, r: scale(a, 1.2, False),
    "brightness -20%": lambda a, r: scale(a, 0.8, False),
    "contrast +20%": lambda a, r: scale(a, 1.2, True),
    "contrast -20%": lambda a, r: scale(a, 0.8, True),
    "webp (q80)": lambda a, r: encode(a, "WEBP", quality=80),
}
EXTRA = {
    "jpeg q50": lambda a, r: encode(a, "JPEG", quality=50),
    "resize 0.5x + jpeg q70": lambda a, r: encode(resize(a, 0.5), "JPEG", quality=70),
    "crop 50% area": lambda a, r: crop(a, r, 0.5),
    "resize 0.25x": lambda a, r: resize(a, 0.25),
    "rotate 2 deg": lambda a, r: np.asarray(Image.fromarray(a).rotate(2, Image.BILINEAR)),
}


# --- measurements -------------------------------------------------------------------------------

def message_accuracy(a: np.ndarray, payload: bytes) -> float:
    """Fraction of the 80 message bits (payload + CRC) the first decode reads right, before the CRC check.

    Uses the detector's internals so a failed detection still gives a bit accuracy (the best over
    the periods the detector tries).
    """
    truth = ecc.message_bits(payload, wm.DEFAULT_KEY.encode())
    bands = wd._whitened(a)
    layout = wm._layout(wm.DEFAULT_KEY)
    best = 0.0
    for period in wd._candidates(bands[0] + bands[1], wd._nominal_period(min(a.shape[:2]))):
        for soft, _, _ in wd._soft_bits(bands, period, layout):
            best = max(best, float(np.mean(ecc.viterbi(soft.sum(axis=0)) == truth)))
    return best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def timed(fn, *args, repeat: int = 7) -> tuple[float, float]:
    """Median (CPU ms, wall ms) over `repeat` runs."""
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(*args)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return statistics.median(cpu), statistics.median(wall)


def print_speed(images: list[np.ndarray], repeat: int) -> None:
    """Embed, detect (marked) and detect (unmarked) CPU time per 1024² image: median and worst image's median."""
    payload = b"\x01\x02\x03\x04\x05\x06"
    wm.detect(wm.embed(images[0], payload))  # warm the key's layout cache
    rows = {"embed": [], "detect marked": [], "detect unmarked": []}
    for a in images:
        marked = wm.embed(a, payload)
        rows["embed"].append(timed(wm.embed, a, payload, repeat=repeat))
        rows["detect marked"].append(timed(wm.detect, marked, repeat=repeat))
        rows["detect unmarked"].append(timed(wm.detect, a, repeat=repeat))
    print(f"speed at 1024² ({len(images)} images, median of {repeat} runs each; CPU ms, wall ms in brackets): "
          + ", ".join(f"{name} {statistics.median(c for c, _ in t):.1f} ({statistics.median(w for _, w in t):.1f}) "
                      f"median / {max(c for c, _ in t):.1f} ({max(w for _, w in t):.1f}) worst"
                      for name, t in rows.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=30, help="synthetic images in the set")
    parser.add_argument("--fp", type=int, default=1200, help="unmarked images/crops for the false-detection count")
    parser.add_argument("--extra", action="store_true", help="also run attacks beyond the targets")
    parser.add_argument("--seed", type=int, default=2026, help="seed for payloads, crops and the unmarked pool")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs per image and operation")
    parser.add_argument("--attacks", help="comma-separated attack names to run (default: all required ones)")
    parser.add_argument("--ssim-target", type=float, default=wm.SSIM_TARGET,
                        help=f"watermark.embed's ssim_target (default {wm.SSIM_TARGET}; lower is more robust)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    images = image_set(args.synthetic)
    attacks = {**REQUIRED, **(EXTRA if args.extra else {})}
    if args.attacks:
        known = {**REQUIRED, **EXTRA}
        names = [n.strip() for n in args.attacks.split(",")]
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"unknown attack(s) {unknown}; known: {', '.join(known)}")
        attacks = {n: known[n] for n in names}
    print(f"ssim_target {args.ssim_target}; image set: {len(images)} images ({sum(1 for n, _ in images if n.startswith('synthetic'))} synthetic), "
          f"sizes {min(min(a.shape[:2]) for _, a in images)}-{max(max(a.shape[:2]) for _, a in images)} px")
    hits = {k: 0 for k in attacks}
    accuracy = {k: [] for k in attacks}
    failures = {k: [] for k in attacks}
    psnrs = []
    for name, a in images:
        payload = rng.integers(0, 256, 6, dtype=np.uint8).tobytes()
        marked = wm.embed(a, payload, ssim_target=args.ssim_target)
        psnrs.append(psnr(a, marked))
        for attack, fn in attacks.items():
            attacked = fn(marked, rng)
            result = wm.detect(attacked)
            ok = result.detected and result.payload == payload.hex()
            hits[attack] += ok
            accuracy[attack].append(1.0 if ok else message_accuracy(attacked, payload))
            if not ok:
                failures[attack].append(name)
    n = len(images)
    print("\n| attack | detected (full payload) | bit accuracy (80 message bits) |\n|---|---|---|")
    for attack in attacks:
        print(f"| {attack} | {hits[attack]}/{n} ({100 * hits[attack] / n:.1f} %) | {np.mean(accuracy[attack]):.4f} |")
    for attack, names in failures.items():
        if names:
            print(f"  missed under {attack}: {', '.join(names)}")
    print(f"\nPSNR over the set: min {min(psnrs):.2f}, median {statistics.median(psnrs):.2f} dB")

    quality = [(psnr(a, m), ssim(a, m)) for a in (synthetic(s, 1024, 1024) for s in range(5))
               for m in [wm.embed(a, b"\x01\x02\x03\x04\x05\x06", ssim_target=args.ssim_target)]]
    big = [a for name, a in images if name.endswith("@1024") and a.shape[:2] == (1024, 1024)]
    quality += [(psnr(a, m), ssim(a, m)) for a in big
                for m in [wm.embed(a, b"\x01\x02\x03\x04\x05\x06", ssim_target=args.ssim_target)]]
    print(f"at 1024² ({len(quality)} images): PSNR min {min(q[0] for q in quality):.2f} / mean "
          f"{np.mean([q[0] for q in quality]):.2f} dB, SSIM min {min(q[1] for q in quality):.4f} / mean "
          f"{np.mean([q[1] for q in quality]):.4f}")
    print_speed([synthetic(s, 1024, 1024) for s in range(5)] + big, args.repeat)

    false, trials, t0 = 0, 0, time.perf_counter()
    pool = [a for _, a in images]
    while trials < args.fp:
        a = pool[trials % len(pool)]
        variant = trials // len(pool)
        if variant:  # crops and rescales of the unmarked images, then fresh synthetic ones
            a = crop(a, rng, rng.uniform(0.3, 0.9))
            if variant % 3 == 2 and min(a.shape[:2]) > 300:
                a = resize(a, rng.uniform(0.4, 0.9))
            if variant % 4 == 3:
                a = synthetic(10_000 + trials, *SD_SIZES[trials % len(SD_SIZES)])
        result = wm.detect(a)
        false += result.detected
        trials += 1
    print(f"\nfalse detections on unmarked images and crops: {false}/{trials} "
          f"({time.perf_counter() - t0:.0f} s); theoretical bound per image <= "
          f"{wd.MAX_CRC_CHECKS} CRC checks x 2^-32 = {wd.MAX_CRC_CHECKS * 2 ** -ecc.CRC_BITS:.1e}")


if __name__ == "__main__":
    main()
