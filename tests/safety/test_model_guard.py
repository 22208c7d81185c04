"""check_model_file: findings from hashes, format, pickle imports and metadata, decided per policy."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from _model_fixtures import FakeLexicon, damaged_zip, kohya_metadata, write_safetensors
from sdguard import Action, load_policy
from sdguard.hash_blocklist import Blocklist, BlocklistEntry
from sdguard.model_guard import check_model_file, detect_format
from sdguard.model_hashes import HashCache


@pytest.fixture
def check(tmp_path: Path):
    """check_model_file with the fake term engine and a throwaway cache."""

    def run(path: Path, profile: str = "public", **kwargs):
        kwargs.setdefault("lexicon", FakeLexicon())
        kwargs.setdefault("cache", HashCache(":memory:"))
        policy = profile if not isinstance(profile, str) else load_policy(profile)
        return check_model_file(path, policy, **kwargs)

    return run


def _policy(tmp_path: Path, body: str):
    path = tmp_path / "p.toml"
    path.write_text(body)
    return load_policy(path)


def test_clean_lora_is_allowed_with_hashes_and_top_tags(tmp_path: Path, check) -> None:
    path = write_safetensors(tmp_path / "style.safetensors",
                             kohya_metadata({"1girl": 100, "smile": 40, "outdoors": 10}))
    v = check(path)
    assert v.action is Action.ALLOW and v.stage == "model"
    assert v.details["format"] == "safetensors" and len(v.details["sha256"]) == 64
    assert v.details["autov2"] == v.details["sha256"][:10] and len(v.details["autov3"]) == 64
    assert v.details["top_tags"][:2] == [["1girl", 100], ["smile", 40]]
    assert v.details["train_images"] == 100  # from ss_dataset_dirs, not ss_num_train_images (x10 repeats)


def test_a_stray_tag_does_not_block_but_a_trained_concept_does(tmp_path: Path, check) -> None:
    stray = write_safetensors(tmp_path / "a.safetensors", kohya_metadata({"1girl": 5000, "nude": 1}, images=5000))
    trained = write_safetensors(tmp_path / "b.safetensors", kohya_metadata({"1girl": 100, "nude": 30}))
    assert check(stray).action is Action.ALLOW
    v = check(trained)
    assert v.action is Action.BLOCK and v.codes == ("sexual",)
    finding = v.evidence[0]
    assert (finding.field, finding.term, finding.source) == ("ss_tag_frequency", "nude", "tag_share")
    assert finding.score == 0.3
    assert "30 of 100 training images" in finding.detail
    assert check(trained, "adult").action is Action.ALLOW


def test_minor_and_sexual_tags_derive_minor_sexual_in_every_profile(tmp_path: Path, check) -> None:
    path = write_safetensors(tmp_path / "x.safetensors", kohya_metadata({"loli": 20, "nude": 30, "1girl": 100}))
    for profile in ("adult", "public", "classroom"):
        v = check(path, profile)
        assert v.blocked and "minor_sexual" in v.codes, profile


def test_real_person_name_with_sexual_content(tmp_path: Path, check) -> None:
    meta = kohya_metadata({"taylor swift": 100, "1girl": 100}, **{"modelspec.description": "nsfw version"})
    path = write_safetensors(tmp_path / "celeb.safetensors", meta)
    v = check(path, "adult")
    assert v.blocked and v.codes == ("real_person_sexual",)


def test_text_fields_and_file_name_are_screened(tmp_path: Path, check) -> None:
    meta = {"modelspec.title": "Ultraman hero", "ss_training_comment": "trained on gore scenes",
            "ss_output_name": "x"}
    path = write_safetensors(tmp_path / "my_nsfw_pack.safetensors", meta)
    v = check(path)
    fields = {f.field: f.term for f in v.evidence}
    assert fields == {"file_name": "nsfw", "modelspec.title": "ultraman", "ss_training_comment": "gore"}
    assert v.action is Action.BLOCK and set(v.codes) == {"sexual", "ip_character", "violence"}
    span = next(f.span for f in v.evidence if f.field == "file_name")
    assert "my_nsfw_pack.safetensors"[span[0]:span[1]] == "nsfw"


def test_dataset_folder_names_are_screened(tmp_path: Path, check) -> None:
    meta = {"ss_dataset_dirs": '{"10_loli_set": {"n_repeats": 10, "img_count": 40}}', "ss_output_name": "x"}
    v = check(write_safetensors(tmp_path / "d.safetensors", meta), "adult")
    assert v.categories.get("minor") == 1.0 and v.action is Action.ALLOW  # a cue alone is allowed


def test_adult_tags_are_not_evidence(tmp_path: Path, check) -> None:
    v = check(write_safetensors(tmp_path / "a.safetensors", kohya_metadata({"adult": 100})))
    assert "adult" not in v.categories and v.action is Action.ALLOW


def test_blocklisted_hash_blocks_even_under_adult(tmp_path: Path, check) -> None:
    path = write_safetensors(tmp_path / "listed.safetensors", {"ss_output_name": "fine"})
    sha = check(path).details["sha256"]
    bl = Blocklist([BlocklistEntry("autov2", sha[:10].upper().lower(), "sexual", "known bad", "mod:7")], name="ops")
    v = check(path, "adult", blocklists=[bl])
    assert v.blocked and v.codes == ("blocked_hash",)
    evidence = v.evidence[0]
    assert evidence.term == f"autov2:{sha[:10]}" and "known bad" in evidence.detail and "mod:7" in evidence.detail
    assert v.categories["sexual"] == 1.0  # the list's category is reported too


def test_autov3_blocklist_survives_metadata_edits(tmp_path: Path, check) -> None:
    a = write_safetensors(tmp_path / "a.safetensors", {"ss_output_name": "original"})
    b = write_safetensors(tmp_path / "b.safetensors", {"ss_output_name": "renamed to dodge"})
    v3 = check(a).details["autov3"]
    bl = Blocklist([BlocklistEntry("autov3", v3[:12], "minor_sexual")])
    assert check(b, blocklists=[bl]).blocked


def _evil_pickle(path: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path.write_bytes(pickle.dumps({"state_dict": {}, "x": Payload()}, protocol=2))
    return path


def test_pickles_are_refused_by_default(tmp_path: Path, check) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2)}, tmp_path / "benign.ckpt")
    v = check(tmp_path / "benign.ckpt", "adult")
    assert v.blocked and v.codes == ("unsafe_format",)
    assert v.details["format"] == "pickle" and v.details["autov3"] is None
    assert "torch._utils._rebuild_tensor_v2" in v.details["pickle_globals"]


def test_allow_pickle_passes_benign_and_still_blocks_dangerous(tmp_path: Path, check) -> None:
    torch = pytest.importorskip("torch")
    policy = _policy(tmp_path, 'extends = "adult"\n[model]\nallow_pickle = true\n')
    torch.save({"w": torch.zeros(2)}, tmp_path / "benign.pt")
    assert check(tmp_path / "benign.pt", policy).action is Action.ALLOW
    v = check(_evil_pickle(tmp_path / "evil.ckpt"), policy)
    assert v.blocked and v.codes == ("unsafe_code",) and v.details["pickle_dangerous"]
    (tmp_path / "empty.ckpt").write_bytes(b"")  # nothing to load is not a clean checkpoint
    v = check(tmp_path / "empty.ckpt", policy)
    assert v.blocked and v.codes == ("malformed_input",) and "empty" in v.details["error"]


def test_unknown_import_warns_when_pickles_are_allowed(tmp_path: Path, check) -> None:
    from decimal import Decimal

    policy = _policy(tmp_path, '[model]\nallow_pickle = true\n')
    path = tmp_path / "odd.pt"
    path.write_bytes(pickle.dumps({"lr": Decimal("1")}, protocol=2))
    v = check(path, policy)
    assert v.action is Action.WARN and v.codes == ("unknown_import",)


@pytest.mark.parametrize("name, content, fmt", [
    ("empty.safetensors", b"", "safetensors"),
    ("trunc.safetensors", None, "safetensors"),
    ("junk.ckpt", b"\xff not a pickle at all", "pickle"),
])
def test_malformed_files_block_with_an_error(tmp_path: Path, check, name: str, content: bytes | None, fmt: str) -> None:
    path = tmp_path / name
    if content is None:
        write_safetensors(path, {"ss_output_name": "x"})
        path.write_bytes(path.read_bytes()[:-3])
    else:
        path.write_bytes(content)
    v = check(path, "adult")
    assert v.blocked and v.codes[0] == "malformed_input"
    assert v.details["format"] == fmt and v.details["error"] and v.details["sha256"]


def test_an_encrypted_pickle_member_blocks_as_malformed(tmp_path: Path, check) -> None:
    policy = _policy(tmp_path, "[model]\nallow_pickle = true\n")
    v = check(damaged_zip(tmp_path / "encrypted.pt", "encrypted"), policy)
    assert v.action is Action.BLOCK and v.codes == ("malformed_input",)
    assert "encrypted" in v.details["error"]


def test_unknown_format_is_refused(tmp_path: Path, check) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    v = check(path, "adult")
    assert v.details["format"] == "unknown" and v.codes == ("unsafe_format",)


def test_format_follows_the_extension_as_hosts_do_and_is_sniffed_otherwise(tmp_path: Path, check) -> None:
    renamed = write_safetensors(tmp_path / "lora.pt", {"a": "b"})  # a host would torch.load this
    assert detect_format(renamed) == "pickle"
    v = check(renamed, "adult")
    assert v.codes[0] == "malformed_input" and "not a valid pickle" in v.details["error"]
    assert detect_format(write_safetensors(tmp_path / "lora", {"a": "b"})) == "safetensors"
    assert detect_format(_evil_pickle(tmp_path / "noext")) == "pickle"


def test_term_lists_that_fail_to_load_fail_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check) -> None:
    from sdguard.prompt_lexical import Lexicon

    def broken(policy):
        raise RuntimeError("term lists corrupt")

    monkeypatch.setattr(Lexicon, "for_policy", broken)
    path = write_safetensors(tmp_path / "a.safetensors", kohya_metadata({"1girl": 10}))
    v = check(path, "adult", lexicon=None)
    assert v.blocked and v.codes[0] == "guard_unavailable" and "term lists corrupt" in v.message
    assert v.details["sha256"]  # hashes and format are still reported


def test_verdicts_are_cached_per_file_state_and_policy(tmp_path: Path, check) -> None:
    cache = HashCache(tmp_path / "cache.sqlite")
    lexicon = FakeLexicon()
    path = write_safetensors(tmp_path / "a.safetensors", kohya_metadata({"nude": 30, "1girl": 100}),)
    first = check(path, cache=cache, lexicon=lexicon)
    calls = lexicon.calls
    again = check(path, cache=cache, lexicon=lexicon)
    assert lexicon.calls == calls  # answered from the cache
    assert again == first and [r.action for r in again.reasons] == [r.action for r in first.reasons]
    check(path, "adult", cache=cache, lexicon=lexicon)
    assert lexicon.calls > calls  # another policy: screened again
    calls = lexicon.calls
    write_safetensors(path, kohya_metadata({"1girl": 100}))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert check(path, cache=cache, lexicon=lexicon).action is Action.ALLOW and lexicon.calls > calls


def test_lexicon_without_fingerprint_is_not_verdict_cached(tmp_path: Path, check) -> None:
    cache = HashCache(":memory:")
    lexicon = FakeLexicon(fingerprint=None)
    path = write_safetensors(tmp_path / "a.safetensors", {"ss_output_name": "x"})
    check(path, cache=cache, lexicon=lexicon)
    calls = lexicon.calls
    check(path, cache=cache, lexicon=lexicon)
    assert lexicon.calls > calls


def test_folder_and_missing_file_raise(tmp_path: Path, check) -> None:
    with pytest.raises(IsADirectoryError):
        check(tmp_path)
    with pytest.raises(FileNotFoundError):
        check(tmp_path / "missing.safetensors")


def test_header_only_screen_skips_hashing_unless_a_blocklist_is_given(tmp_path: Path, check) -> None:
    path = write_safetensors(tmp_path / "a.safetensors", kohya_metadata({"nude": 30, "1girl": 100}))
    quick = check(path, hashes=False)
    assert quick.blocked and quick.details["sha256"] is None and quick.details["autov3"] is None
    sha = check(path).details["sha256"]
    listed = Blocklist([BlocklistEntry("sha256", sha, "sexual")])
    assert check(path, "adult", hashes=False, blocklists=[listed]).codes == ("blocked_hash",)


def test_with_the_prompt_stage_term_lists(tmp_path: Path) -> None:
    """The same lists as prompts: the real Lexicon, not the fake."""
    from sdguard.prompt_lexical import Lexicon

    tags = {"1girl": 100, "loli": 40, "nude": 35, "solo": 90}
    path = write_safetensors(tmp_path / "x.safetensors", kohya_metadata(tags, **{"modelspec.title": "Beach"}))
    v = check_model_file(path, load_policy("adult"), cache=HashCache(":memory:"), lexicon=Lexicon.default())
    assert v.blocked and v.codes == ("minor_sexual",)
    clean = write_safetensors(tmp_path / "c.safetensors", kohya_metadata({"1girl": 100, "long hair": 80}))
    assert check_model_file(clean, load_policy("public"), cache=HashCache(":memory:"),
                            lexicon=Lexicon.default()).action is Action.ALLOW


def test_header_only_screen_does_not_read_the_tensors(tmp_path: Path, check) -> None:
    import json
    import struct
    import time

    size = 8 << 30  # 8 GB of sparse data: reading it would take minutes
    header = json.dumps({"__metadata__": {"modelspec.title": "nude"},
                         "w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + size)
    start = time.perf_counter()
    v = check(path, hashes=False)
    assert v.blocked and v.codes == ("sexual",) and time.perf_counter() - start < 1.0


def test_a_damaged_cached_verdict_is_a_miss(tmp_path: Path, check) -> None:
    cache = HashCache(":memory:")
    lexicon = FakeLexicon()
    path = write_safetensors(tmp_path / "a.safetensors", kohya_metadata({"nude": 30, "1girl": 100}))
    first = check(path, cache=cache, lexicon=lexicon)
    cache._db.execute("UPDATE verdicts SET verdict = '{\"stage\": \"model\"}'")
    assert check(path, cache=cache, lexicon=lexicon) == first


def test_oversized_metadata_is_refused_not_truncated(tmp_path: Path, check, monkeypatch: pytest.MonkeyPatch) -> None:
    import sdguard.model_guard as mg

    monkeypatch.setattr(mg, "MAX_METADATA_CHARS", 1000)
    path = write_safetensors(tmp_path / "padded.safetensors", {"ss_training_comment": "x " * 600 + "nude"})
    v = check(path, "adult")
    assert v.blocked and v.codes[0] == "malformed_input" and "too large to screen" in v.details["error"]
    # Keys count too: many long keys with empty values cost as much to screen.
    path = write_safetensors(tmp_path / "keys.safetensors", {f"key{i:03d}_" + "x " * 10: "" for i in range(60)})
    v = check(path, "adult")
    assert v.blocked and v.codes[0] == "malformed_input" and "too large to screen" in v.details["error"]


@pytest.mark.parametrize("category", ["blocked_hash", "unsafe_code"])
def test_a_policy_cannot_relax_listed_hashes_or_dangerous_code(tmp_path: Path, category: str) -> None:
    from sdguard import PolicyError

    with pytest.raises(PolicyError, match="cannot be relaxed"):
        _policy(tmp_path, f'extends = "adult"\n[categories.{category}]\naction = "warn"\n')


@pytest.mark.parametrize("profile", ["classroom", "public", "adult"])
@pytest.mark.parametrize("tags, extra", [
    ({"loli": 40, "nude": 50, "1girl": 100, "zzz": 100_000}, {}),  # one huge tag dilutes the shares
    ({"loli": 40, "nude": 50, "1girl": 100}, {"ss_num_train_images": "100000000"}),
    ({"loli": 40, "nude": 50, "1girl": 100}, {"ss_dataset_dirs": '{"10_subject": {"img_count": 99999999}}'}),
])
def test_minor_and_sexual_tags_cannot_be_diluted(tmp_path: Path, check, profile: str, tags, extra) -> None:
    meta = kohya_metadata(tags)
    meta.update(extra)
    v = check(write_safetensors(tmp_path / "x.safetensors", meta), profile)
    assert v.action is Action.BLOCK and "minor_sexual" in v.codes


@pytest.mark.parametrize("raw", ['{"d": {"loli": 40, "nude": 50, "zzz": -1000}}', "{not json, loli, nude",
                                 '{"d": {"loli": 40, "nude": 50, "zzz": 1.5}}'])
def test_malformed_tag_frequency_blocks_and_its_text_is_screened(tmp_path: Path, check, raw: str) -> None:
    meta = {"ss_tag_frequency": raw}
    v = check(write_safetensors(tmp_path / "x.safetensors", meta), "adult")
    assert v.action is Action.BLOCK and v.codes[0] == "malformed_input"
    assert v.details["error"].startswith("ss_tag_frequency")
    assert {"minor", "sexual"} <= set(v.categories)  # the raw text went through the term lists


def test_malformed_image_counts_block(tmp_path: Path, check) -> None:
    for extra in ({"ss_num_train_images": "-5"}, {"ss_num_train_images": "many"},
                  {"ss_dataset_dirs": '{"10_subject": {"img_count": -3}}'}):
        meta = kohya_metadata({"1girl": 10})
        meta.update(extra)
        v = check(write_safetensors(tmp_path / "x.safetensors", meta), "adult")
        assert v.action is Action.BLOCK and "malformed_input" in v.codes, extra
