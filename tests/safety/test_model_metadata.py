"""Training-tag statistics and metadata findings (the share arithmetic behind tag_share)."""

from __future__ import annotations

import json

from _model_fixtures import FakeLexicon, kohya_metadata
from sdguard import load_policy
from sdguard.model_metadata import metadata_findings, tag_stats


def test_tags_merge_across_folders_and_count_images_without_repeats() -> None:
    meta = {
        "ss_tag_frequency": json.dumps({"5_a": {"Nude": 3, "smile": 1}, "10_b": {"nude": 2, " long  hair ": 4}}),
        "ss_dataset_dirs": json.dumps({"5_a": {"n_repeats": 5, "img_count": 4},
                                       "10_b": {"n_repeats": 10, "img_count": 6}}),
        "ss_num_train_images": "80",
    }
    stats = tag_stats(meta)
    assert stats.counts == {"nude": 5, "long hair": 4, "smile": 1}
    assert (stats.images, stats.basis, stats.error) == (10, "ss_dataset_dirs", None)


def test_image_count_falls_back_to_num_train_images_then_max_tag() -> None:
    tags = json.dumps({"d": {"a": 7, "b": 60}})
    assert tag_stats({"ss_tag_frequency": tags, "ss_num_train_images": "50"}).images == 60
    assert tag_stats({"ss_tag_frequency": tags, "ss_num_train_images": "65"}).images == 65
    tags = json.dumps({"d": {"a": 7}})
    stats = tag_stats({"ss_tag_frequency": tags})
    assert (stats.images, stats.basis) == (7, "max tag count")


def test_malformed_tag_frequency_is_reported_not_raised() -> None:
    for raw in ("{", "[1]", '{"d": [1]}', '{"d": {"a": -1}}', '{"d": {"a": "3"}}'):
        stats = tag_stats({"ss_tag_frequency": raw})
        assert stats.counts == {} and stats.error and stats.error.startswith("ss_tag_frequency")


def test_one_finding_per_category_with_the_largest_tag_and_all_tags_named() -> None:
    meta = kohya_metadata({"nude": 20, "pussy": 35, "nsfw": 5, "1girl": 100})
    findings = metadata_findings(meta, "x.safetensors", FakeLexicon(), load_policy("public"))
    [sexual] = [f for f in findings if f.category == "sexual"]
    assert (sexual.term, sexual.score, sexual.threshold) == ("pussy", 0.35, 0.1)
    assert "pussy (35), nude (20), nsfw (5)" in sexual.detail


def test_terms_never_span_two_tags() -> None:
    lexicon = FakeLexicon({"taylor swift": "real_person"})
    meta = kohya_metadata({"taylor": 50, "swift": 50})
    assert metadata_findings(meta, "x", lexicon, load_policy("public")) == []


def test_modelspec_fields_are_screened_with_their_key() -> None:
    meta = {"modelspec.tags": "anime, child, style", "modelspec.trigger_phrase": "nude pose"}
    found = {(f.field, f.category, f.term) for f in metadata_findings(meta, "x", FakeLexicon(), load_policy("public"))}
    assert found == {("modelspec.tags", "minor", "child"), ("modelspec.trigger_phrase", "sexual", "nude")}


def test_image_count_cannot_exceed_what_the_tags_support() -> None:
    tags = json.dumps({"d": {"a": 7, "b": 3}})
    stats = tag_stats({"ss_tag_frequency": tags, "ss_num_train_images": "5000000"})
    assert stats.images == 10  # at most one image per tag occurrence


def test_a_few_minor_and_sexual_images_make_minor_sexual_however_diluted() -> None:
    policy = load_policy("adult")
    for tags, expected in (({"loli": 3, "nude": 3, "zzz": 10**6}, True), ({"loli": 2, "nude": 50, "zzz": 10**6}, False)):
        findings = metadata_findings(kohya_metadata(tags), "x", FakeLexicon(), policy)
        derived = [f for f in findings if f.category == "minor_sexual"]
        assert bool(derived) is expected, tags
        if expected:
            assert derived[0].fired and "loli (3)" in derived[0].detail and "nude (3)" in derived[0].detail


def test_every_metadata_value_is_screened_with_its_key() -> None:
    datasets = '[{"subsets": [{"class_tokens": "child"}]}]'
    meta = {"description": "loli nude", "ss_datasets": datasets, "ss_network_dim": "32", "gore": ""}
    found = {(f.field, f.category, f.term, f.span) for f in metadata_findings(meta, "x", FakeLexicon(),
                                                                              load_policy("public"))}
    assert found == {("description", "minor", "loli", (0, 4)), ("description", "sexual", "nude", (5, 9)),
                     ("ss_datasets", "minor", "child", (datasets.index("child"), datasets.index("child") + 5)),
                     ("__metadata__ keys", "violence", "gore", (0, 4))}


def test_screening_many_keys_is_one_term_engine_call_and_tags_stay_weighed() -> None:
    meta = {f"k{i}": "plain words" for i in range(1000)}
    meta.update(kohya_metadata({"nude": 1, "1girl": 5000}, images=5000))
    lexicon = FakeLexicon()
    findings = metadata_findings(meta, "x", lexicon, load_policy("public"))
    assert lexicon.calls <= 2  # the texts in one call, the tags in one more
    [nude] = findings  # the stray tag is weighed by share, never screened as raw text
    assert (nude.source, nude.fired) == ("tag_share", False)


def test_telling_tags_cannot_be_pushed_out_by_filler_tags() -> None:
    filler = {f"filler{i}": 100 for i in range(60_000)}
    meta = kohya_metadata({**filler, "loli": 40, "nude": 50})
    findings = metadata_findings(meta, "x", FakeLexicon(), load_policy("adult"))
    assert "minor_sexual" in {f.category for f in findings}


def test_memoised_tag_hits_give_the_same_findings() -> None:
    lexicon, policy = FakeLexicon(), load_policy("public")
    meta = kohya_metadata({"nude": 30, "loli": 2, "schoolgirl": 9, "1girl": 100, "smile": 50})
    first = metadata_findings(meta, "x", lexicon, policy)
    calls = lexicon.calls
    assert metadata_findings(meta, "x", lexicon, policy) == first
    assert lexicon.calls == calls + 1  # the text fields again; the tags came from the memo


def test_other_dataset_json_that_does_not_parse_is_an_error_and_still_screened() -> None:
    for key in ("ss_datasets", "ss_reg_dataset_dirs"):
        meta = {key: '[{"class_tokens": "loli", '}
        stats = tag_stats(meta)
        assert stats.error.startswith(key) and stats.unparsed == (key,)
        found = {(f.field, f.term) for f in metadata_findings(meta, "x", FakeLexicon(), load_policy("public"), stats)}
        assert (key, "loli") in found
    assert tag_stats({"ss_datasets": '[{"subsets": []}]'}).error is None
