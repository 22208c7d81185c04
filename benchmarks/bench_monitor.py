"""Benchmark the in-loop monitor: preview decode and classifier costs, and the overhead of the
default schedule on a 20-step SD1.5 512² run.

    python benchmarks/bench_monitor.py [--repeats 5] [--fake-classifier]

Uses CUDA when available (prints the device). Inputs are seeded and synthetic; TAESD runs with
random weights (the cost does not depend on the values). The classifier is the image guard's
`check_images` over the `public` profile's preview backends (``[monitor] backends``), loaded once
before timing; the whole image ensemble (what `classroom` previews meet) is timed beside it.
--fake-classifier (or a missing image guard) replaces it with a no-op so decode costs can be read alone.

The GPU sampler is simulated by sleeping for a per-step time taken from public user reports
(`STEP_MS`, sources beside each): like a CUDA kernel, a sleeping sampler thread leaves the CPU
free, which is what background classification relies on. Every figure printed says whether it
was measured here or taken from elsewhere.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

STEPS = 20
LATENT_512 = 64     # SD1.5 512² → 64×64 latent
LATENT_1024 = 128   # SDXL 1024² → 128×128 latent
SMALL_PREVIEW = 128  # the TAESD preview size a CPU decodes in about 100 ms (cost grows with output pixels)
# Per-step times of SD1.5 512² (batch 1, CFG, 20 steps), in ms, from public user reports (not
# measured here; no GPU was lent):
#   RTX 3090: "Euler a at 20 steps in 2.5 seconds" (AUTOMATIC1111/stable-diffusion-webui#241) → 125 ms
#   RTX 4090: "batch size 1, 512x512, 18.79~20.62 it/s", Euler a, 20 steps (same repo, #2449) → 50 ms
#   TensorRT-compiled UNet, the fastest reported: "512x512, 25 Steps, Generated in 471ms" (#7378)
#   → 19 ms; an H100 running plain PyTorch at batch 1 is launch-bound, between the last two.
STEP_MS = {"RTX 3090 (A1111 #241)": 125.0, "RTX 4090 (A1111 #2449)": 50.0, "TensorRT UNet (A1111 #7378)": 19.0}
OVERHEAD_TARGET = 0.03
SIM_RUNS = 3  # simulated runs per setting (median)
# Checks are steps apart, so the classifier and the linear decode are timed after this much idle
# time: back to back, the thread pools of the call before are still spinning and slow the next call.
CHECK_GAP_S = 0.05


def timed(fn: Callable[[], object], repeats: int, device: torch.device, pause: float = 0.0) -> float:
    """Median wall time in ms after one warm-up call; `pause` s of idle (not timed) before each call."""
    fn()
    samples = []
    for _ in range(repeats):
        time.sleep(pause)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fake-classifier", action="store_true", help="time decoding alone")
    parser.add_argument("--classifier-ms", type=float,
                        help="also estimate with this classifier time (e.g. a desktop CPU or onnxruntime-gpu)")
    parser.add_argument("--decode-ms", type=float,
                        help="also estimate with this decode time (e.g. a GPU's, when run on a CPU)")
    parser.add_argument("--no-simulation", action="store_true", help="skip the simulated 20-step runs")
    args = parser.parse_args()

    from sdguard import load_policy
    from sdguard.latent_formats import latent_format
    from sdguard.latent_preview import LinearPreview, preview_images
    from sdguard.monitor import check_steps
    from sdguard.preview_check import check_latent

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {device} ({name}); torch {torch.__version__}; {torch.get_num_threads()} CPU threads; "
          f"{os.cpu_count()} cores; load average {load:.1f}")

    policy = load_policy("public")
    fmt = latent_format("sd15")
    generator = torch.Generator().manual_seed(0)
    x0_512 = torch.randn(1, 4, LATENT_512, LATENT_512, generator=generator).to(device)
    x0_1024 = torch.randn(1, 4, LATENT_1024, LATENT_1024, generator=generator).to(device)
    size = int(policy.section("monitor")["preview_size"])

    checker, classifier_name = _checker(args.fake_classifier, policy)
    preview = preview_images(LinearPreview(fmt), x0_512, size=size)[0][0]
    rows: list[tuple[str, float, str]] = []

    linear = LinearPreview(fmt)
    # Paused like the classifier: a decode runs steps after the last check, and right after the
    # classifier loads, onnxruntime's spinning threads make it about 5× slower on 2 cores.
    decode_ms = timed(lambda: preview_images(linear, x0_512, size=size), args.repeats, device, pause=CHECK_GAP_S)
    rows.append((f"linear decode 64² latent → {preview.shape[1]}² preview", decode_ms, ""))
    backends = _backends(args.fake_classifier, policy)
    for name, backend in backends.items():
        if getattr(backend, "needs_faces", False):
            continue  # age runs on faces only; a random preview has none
        rows.append((f"  {name} alone, one {preview.shape[1]}² preview", timed(
            lambda backend=backend: backend.detect([preview]), args.repeats, device, CHECK_GAP_S), ""))
    classify_ms = timed(lambda: checker([preview], policy, stage="preview"), args.repeats, device, CHECK_GAP_S)
    rows.append((f"classifier, public previews ({classifier_name})", classify_ms, ""))
    gil_ms = _python_ms(lambda: checker([preview], policy, stage="preview"), backends, args.repeats)
    rows.append(("  of which Python (holds the GIL; the rest is onnxruntime)", gil_ms, ""))
    if not args.fake_classifier:
        classroom = load_policy("classroom")
        full, full_name = _checker(False, classroom)
        rows.append((f"classifier, classroom previews ({full_name})", timed(
            lambda: full([preview], classroom, stage="preview"), args.repeats, device, CHECK_GAP_S), ""))
    check_ms = timed(lambda: check_latent(x0_512, policy, linear, checker=checker), args.repeats, device,
                     CHECK_GAP_S)
    rows.append(("linear + classifier (public), 64² latent", check_ms, "target ≤ 30 ms"))

    taesd = _random_taesd(fmt, device)
    full_repeats = 1 if device.type == "cpu" else args.repeats  # ≈ 280 GMAC: tens of seconds on a small CPU
    full_1024 = timed(lambda: taesd.decode(x0_1024), full_repeats, device)
    rows.append(("TAESD decode 128² latent → 1024² (full size)", full_1024, "target ≤ 100 ms on CPU"))
    rows.append(("TAESD decode 64² latent → 512² (full size)", timed(
        lambda: taesd.decode(x0_512), full_repeats, device), ""))
    rows.append((f"TAESD 128² latent shrunk → {size}² (monitor default)", timed(
        lambda: preview_images(taesd, x0_1024, size=size, shrink_latent=True), args.repeats, device), ""))
    rows.append((f"TAESD 128² latent shrunk → {SMALL_PREVIEW}² (preview_size = {SMALL_PREVIEW})", timed(
        lambda: preview_images(taesd, x0_1024, size=SMALL_PREVIEW, shrink_latent=True), args.repeats, device),
        "target ≤ 100 ms on CPU"))

    print(f"\n{'measured here (median of ' + str(args.repeats) + ')':<58} {'ms':>9}")
    for label, ms, note in rows:
        print(f"{label:<58} {ms:>9.1f}  {note}")

    scheduled = check_steps(STEPS, policy.section("monitor")["schedule"], True)
    checks = len(scheduled)
    print(f"\nDefault schedule: {checks} checks in {STEPS} steps (steps {list(scheduled)}); "
          f"overhead of a 20-step SD1.5 512² run, target ≤ {OVERHEAD_TARGET:.0%}")
    estimates = [("measured costs", decode_ms, classify_ms)]
    if args.classifier_ms is not None or args.decode_ms is not None:
        dec = decode_ms if args.decode_ms is None else args.decode_ms
        cls = classify_ms if args.classifier_ms is None else args.classifier_ms
        estimates.append((f"decode {dec:g} + classify {cls:g} ms (assumed)", dec, cls))
    unwaited = len(check_steps(STEPS, policy.section("monitor")["schedule"], False))
    print(f"{'per-step time':<28} {'costs':<34} {'sync est.':>9} {'bg est.':>8} {'bg, no final':>12} "
          f"{'sync sim.':>9} {'bg sim.':>8}")
    for label, step_ms in STEP_MS.items():
        simulated = None
        if not args.no_simulation:
            simulated = [_simulated_overhead(fmt, linear, checker, x0_512, step_ms, background=b)
                         for b in (False, True)]
        for costs, dec, cls in estimates:
            sync = checks * (dec + cls) / (STEPS * step_ms)
            # Background: decodes stay on the sampler thread; of the classifications only the last
            # one (the final step's) is waited for, if the worker keeps up between checks.
            background = (checks * dec + cls + (checks - 1) * gil_ms) / (STEPS * step_ms)
            # check_final = false: no check is waited for (the last one reports steps before the end).
            no_final = unwaited * (dec + gil_ms) / (STEPS * step_ms)
            sims = f"{simulated[0]:>9.1%} {simulated[1]:>8.1%}" if simulated and costs == "measured costs" else ""
            print(f"{label:<28} {costs:<34} {sync:>9.1%} {background:>8.1%} {no_final:>12.1%} {sims}")
    print("\nest. = from the costs above; sim. = wall time of a 20-step run that sleeps per step (a GPU "
          "leaves the CPU free) with the monitor vs without; bg = [monitor] background = true.\n"
          "bg est. = the decodes and the final check (waited for) plus the Python time of the other checks "
          "(it holds the GIL, which a launch-bound sampler thread also needs: an upper bound);\n"
          "bg, no final = the same with check_final = false (the image stage still checks the final image).")


def _checker(fake: bool, policy) -> tuple[Callable, str]:
    """The monitor's default classifier for `policy` (its preview backends, loaded), else a no-op."""
    if not fake:
        try:
            from sdguard.image_guard import check_images, load_backends

            names = list(policy.section("monitor")["backends"])
            loaded, failures = load_backends(names)
            if not failures:
                return functools.partial(check_images, only=names), "+".join(names)
            print(f"image guard backends unavailable ({failures}); using a no-op classifier")
        except ImportError as e:
            print(f"image guard not importable ({e}); using a no-op classifier")
    from sdguard.verdict import decide

    def noop(images, policy, stage):
        return [decide(stage, [], policy) for _ in images]

    return noop, "no-op"


def _backends(fake: bool, policy) -> dict:
    """The whole image ensemble's backends, loaded (none with --fake-classifier)."""
    if fake:
        return {}
    from sdguard.image_guard import load_backends

    return load_backends(list(policy.section("image")["backends"]))[0]


def _python_ms(check: Callable[[], object], backends: dict, repeats: int) -> float:
    """Median ms of one `check` spent outside onnxruntime's `run` (which releases the GIL)."""
    inside = [0.0]

    class Timed:
        def __init__(self, session):
            self.session = session

        def run(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return self.session.run(*args, **kwargs)
            finally:
                inside[0] += (time.perf_counter() - start) * 1000

    sessions = {name: b._session for name, b in backends.items() if hasattr(b, "_session")}
    samples = []
    try:
        for name, session in sessions.items():
            backends[name]._session = Timed(session)
        check()
        for _ in range(repeats):
            time.sleep(CHECK_GAP_S)
            inside[0] = 0.0
            start = time.perf_counter()
            check()
            samples.append((time.perf_counter() - start) * 1000 - inside[0])
    finally:
        for name, session in sessions.items():
            backends[name]._session = session
    return statistics.median(samples)


def _random_taesd(fmt, device):
    """A TAESDPreview around a randomly initialised decoder (same cost as the real weights)."""
    import tempfile

    from sdguard.latent_preview import TAESDPreview, taesd_decoder

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        torch.save(taesd_decoder(fmt.channels).state_dict(), Path(folder) / f"{fmt.taesd_decoder}.pth")
        preview = TAESDPreview(fmt, search_dirs=[folder])
    preview.decode(torch.zeros(1, fmt.channels, 8, 8, device=device))
    return preview


def _simulated_overhead(fmt, decoder, checker, x0, step_ms: float, *, background: bool) -> float:
    """Median of (wall time with the monitor − without) / without, for 20-step runs that sleep per step."""
    import tempfile

    from sdguard import load_policy
    from sdguard.monitor import LoopMonitor

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.toml"
        path.write_text(f'extends = "public"\n[monitor]\nbackground = {str(background).lower()}\n')
        bench_policy = load_policy(path)
    monitor = LoopMonitor(bench_policy, fmt, decoder=decoder, checker=checker)

    def sampling(with_monitor: bool) -> float:
        start = time.perf_counter()
        for step in range(STEPS):
            time.sleep(step_ms / 1000)          # the GPU step: the CPU is free meanwhile
            if with_monitor:
                monitor.on_step(step, STEPS, x0)
        if with_monitor:
            monitor.finish()
        return time.perf_counter() - start

    sampling(True)  # warm-up: the worker thread starts
    runs = [(sampling(True), sampling(False)) for _ in range(SIM_RUNS)]
    return statistics.median((with_monitor - base) / base for with_monitor, base in runs)


if __name__ == "__main__":
    main()
