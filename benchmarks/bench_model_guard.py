"""Benchmark of the model-file stage: header-only screening, one-pass hashing against `sha256sum`,
and a re-scan of unchanged files from the cache.

    python benchmarks/bench_model_guard.py [--hash-mb 1024] [--files 1000] [--keep DIR]

Everything is synthetic and built in a temporary folder: LoRA-sized headers (~800 tensors, 3,000
training tags) over sparse data of any size, a random-data file for hashing, and a folder of tiny
LoRAs. Hashing is timed with the file already in the page cache (a warm-up read first), for
`sha256sum` and for sdguard alike, so both measure CPU, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdguard import load_policy
from sdguard.model_guard import check_model_file
from sdguard.model_hashes import HashCache, hash_file
from sdguard.safetensors_header import read_header

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "safety"))
from _model_fixtures import FakeLexicon, kohya_metadata, write_safetensors  # noqa: E402

LORA_TENSORS = 792  # an SDXL LoRA at rank 32 has about this many
LORA_TAGS = 3000
# Danbooru-like tags ("long hair", "red dress", ...) without digits, as real captions have.
_ADJECTIVES = ("long", "short", "red", "blue", "green", "black", "white", "open", "closed", "large",
               "small", "striped", "wet", "shiny", "floral", "dark", "bright", "pink", "grey", "brown",
               "simple", "detailed", "soft", "hard", "round", "sharp", "tall", "flat", "curly", "straight")
_NOUNS = ("hair", "eyes", "dress", "shirt", "skirt", "sky", "background", "window", "tree", "flower", "hat",
          "jacket", "boots", "gloves", "ribbon", "bow", "scarf", "coat", "water", "light", "shadow", "cloud",
          "mountain", "river", "street", "building", "room", "chair", "table", "book", "cup", "sword", "shield",
          "armor", "cape", "belt", "necklace", "earrings", "bracelet", "ring", "mask", "helmet", "wings", "tail",
          "horns", "ears", "mouth", "teeth", "tongue", "hands", "fingers", "legs", "feet", "arms", "shoulders",
          "neck", "face", "smile", "frown", "tears", "blush", "sweat", "rain", "snow", "fire", "smoke", "grass",
          "sand", "stone", "wood", "metal", "glass", "paper", "cloth", "leather", "fur", "feathers", "scales",
          "bubbles", "stars", "moon", "sun", "clouds", "waves", "leaves", "petals", "branches", "roots", "vines",
          "fence", "wall", "door", "roof", "floor", "stairs", "bridge", "road", "path", "field")
MiB = 1 << 20


def lexicon():
    """The prompt stage's real term engine when it is available, else the test fake (said in the output)."""
    try:
        from sdguard.prompt_lexical import Lexicon

        real = Lexicon.default()
        if callable(getattr(real, "scan", None)):
            return real, "prompt_lexical.Lexicon"
    except Exception:  # noqa: BLE001 - a benchmark falls back and says so
        pass
    return FakeLexicon(), "FakeLexicon (prompt_lexical not ready)"


def sparse_lora(path: Path, data_bytes: int, tensors: int = LORA_TENSORS, tag_count: int = LORA_TAGS) -> Path:
    """A safetensors file with a header like a real model's over `data_bytes` of sparse (unwritten) data."""
    names = [f"{a} {n}" for a in _ADJECTIVES for n in _NOUNS][:tag_count]
    tags = {name: max(1, 400 - i // 8) for i, name in enumerate(names)}
    tags.update({"1girl": 400, "nude": 3})
    header: dict[str, object] = {"__metadata__": kohya_metadata(tags, images=400)} if tag_count else {}
    per = data_bytes // tensors // 2 * 2
    offset = 0
    for i in range(tensors):
        size = per if i < tensors - 1 else data_bytes - offset
        header[f"lora_unet_block_{i}.lora_down.weight"] = {"dtype": "F16", "shape": [size // 2],
                                                           "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + data_bytes)
    return path


def bench_header(tmp: Path, lex) -> list[tuple[str, str]]:
    from sdguard import model_metadata

    policy = load_policy("public")
    rows = []

    def screen(path: Path) -> None:
        check_model_file(path, policy, lexicon=lex, cache=HashCache(":memory:"), hashes=False)

    for label, size, tensors, tags in (("LoRA 200 MB", 200 * MiB, 264, 300),
                                       ("LoRA 200 MB", 200 * MiB, LORA_TENSORS, LORA_TAGS),
                                       ("checkpoint 6.5 GB", 6656 * MiB, 2515, 0)):
        path = sparse_lora(tmp / f"{size}-{tensors}.safetensors", size, tensors, tags)
        header_kb = read_header(path).header_size / 1024
        what = f"{label}, {tensors} tensors, {tags} tags ({header_kb:.0f} KB header)"
        rows.append((f"header read: {what}", _median_ms(lambda p=path: read_header(p))))
        # First sight of every tag: the memo is emptied before each run, so the term engine reads them all.
        rows.append(("  screen, tags never seen before",
                     _median_ms(lambda p=path: screen(p), model_metadata._TAG_HITS.clear)))
        screen(path)
        rows.append(("  screen, tags seen before (per-process memo)", _median_ms(lambda p=path: screen(p))))
    return rows


def _median_ms(fn, before=None, runs: int = 15) -> str:
    """Median wall time and median CPU time of this process: on a shared machine the wall time
    includes waiting for a core, the CPU time does not."""
    wall, cpu = [], []
    for _ in range(runs):
        if before is not None:
            before()
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return f"{statistics.median(wall) * 1e3:.2f} ms (cpu {statistics.median(cpu) * 1e3:.2f} ms)"


def bench_hash(tmp: Path, megabytes: int) -> list[tuple[str, str]]:
    path = tmp / "random.safetensors"
    data = megabytes * MiB
    write_safetensors(path, {"a": "b"}, tensors={})  # valid header, then append random data as one tensor
    head = {"w": {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}}
    raw = json.dumps(head).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        block = os.urandom(16 * MiB)
        for i in range(megabytes // 16):
            f.write(hashlib.sha256(block + i.to_bytes(4, "little")).digest() + block[32:])
    offset = read_header(path).data_offset
    hash_file(path)  # warm the page cache

    def best(fn, runs=2):
        return min(_timed(fn) for _ in range(runs))

    sha256sum = shutil.which("sha256sum")
    ours_one = best(lambda: hash_file(path))
    ours_two = best(lambda: hash_file(path, data_offset=offset))
    rows = []
    if sha256sum:
        ref = best(lambda: subprocess.run([sha256sum, str(path)], check=True, capture_output=True))
        rows.append((f"sha256sum, {megabytes} MiB", f"{megabytes / ref:.0f} MiB/s"))
    rows.append(("sdguard SHA-256 only", f"{megabytes / ours_one:.0f} MiB/s"
                 + (f" ({ref / ours_one:.0%} of sha256sum)" if sha256sum else "")))
    rows.append(("sdguard SHA-256 + AutoV3 (one pass)", f"{megabytes / ours_two:.0f} MiB/s"
                 + (f" ({ref / ours_two:.0%} of sha256sum)" if sha256sum else "")))
    return rows


def bench_rescan(tmp: Path, count: int, lex) -> list[tuple[str, str]]:
    from sdguard.cli._common import find_files
    from sdguard.cli.models import MODEL_EXTS

    folder = tmp / "loras"
    folder.mkdir()
    for i in range(count):
        write_safetensors(folder / f"lora_{i:04d}.safetensors", kohya_metadata({"1girl": 50, f"style {i}": 40}))
    policy = load_policy("public")
    cache = HashCache(tmp / "cache.sqlite")

    def scan():
        return [check_model_file(p, policy, lexicon=lex, cache=cache) for p, _ in find_files([str(folder)], MODEL_EXTS)]

    cold = _timed(scan)
    warm = min(_timed(scan) for _ in range(3))
    return [(f"first scan, {count} tiny LoRAs", f"{cold:.2f} s"),
            (f"re-scan, {count} unchanged files (cache)", f"{warm:.3f} s ({warm / count * 1e3:.2f} ms/file)")]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-mb", type=int, default=1024, help="size of the hashing test file (MiB)")
    parser.add_argument("--files", type=int, default=1000, help="files in the re-scan test")
    args = parser.parse_args()
    lex, lex_name = lexicon()
    with tempfile.TemporaryDirectory(prefix="sdguard-bench-") as name:
        tmp = Path(name)
        rows = [("term engine", lex_name), ("cpu cores", str(os.cpu_count()))]
        rows += bench_header(tmp, lex)
        rows += bench_rescan(tmp, args.files, lex)
        rows += bench_hash(tmp, args.hash_mb)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
