"""Weights manager figures: locate() latency, verify() hashing throughput on the packaged model
files, and fetch() throughput (fresh and resumed) from a 127.0.0.1 HTTP server.

    python benchmarks/bench_weights.py [--mb 64]

Nothing is downloaded from the internet; the served file is random bytes made here.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import tempfile
import threading
import time
from pathlib import Path

from sdguard import weights


def serve(payload: bytes) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            body = payload[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/w.bin"


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="size of the served file in MB")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []

    specs = weights.load_manifest()
    for name, what in (("nudenet_320n", "found in its package"), ("taesd_decoder", "missing")):
        seconds = timed(lambda: weights.find(name, manifest=specs), 200)
        rows.append((f"locate({name}), {what}", f"{seconds * 1e3:.2f} ms"))
    present = [r for r in weights.verify(manifest=specs) if r.path is not None]
    total = sum(r.path.stat().st_size for r in present)
    seconds = timed(lambda: weights.verify(manifest=specs))
    rows.append((f"verify(): {len(present)} present files, {total / 1e6:.0f} MB",
                 f"{seconds:.2f} s = {total / 1e6 / seconds:.0f} MB/s"))

    payload = os.urandom(args.mb << 20)
    httpd, url = serve(payload)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SDGUARD_CACHE"] = tmp
        manifest = Path(tmp) / "M.toml"
        manifest.write_text(f'[w]\nfile = "w.bin"\nurl = "{url}"\nsize = {len(payload)}\n'
                            f'sha256 = "{hashlib.sha256(payload).hexdigest()}"\n')
        seconds = timed(lambda: weights.fetch("w", progress=False, manifest=manifest))
        rows.append((f"fetch(): {args.mb} MB from 127.0.0.1, incl. sha256",
                     f"{seconds:.2f} s = {args.mb / seconds:.0f} MB/s"))
        installed = weights.cache_dir() / "w.bin"
        part = installed.with_name("w.bin.part")
        os.replace(installed, part)
        with part.open("r+b") as f:
            f.truncate(len(payload) // 2)
        seconds = timed(lambda: weights.fetch("w", progress=False, manifest=manifest))
        rows.append((f"fetch(): resume the second half ({args.mb // 2} MB)", f"{seconds:.2f} s"))
    httpd.shutdown()

    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  result")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
