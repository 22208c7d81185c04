"""Policy loading, profiles, the protected categories and fingerprints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdguard import Action, PolicyError, load_policy
from sdguard.policy import PROFILES, PROTECTED, STAGES


def write(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("category", PROTECTED)
@pytest.mark.parametrize("stage", STAGES)
def test_protected_categories_block_in_every_profile(profile, category, stage):
    assert load_policy(profile).action_for(category, stage) is Action.BLOCK


def test_default_profile_is_public():
    assert load_policy().name == "public"
    assert load_policy().fingerprint == load_policy("public").fingerprint


def test_profiles_differ_where_they_should():
    classroom, public, adult = (load_policy(p) for p in ("classroom", "public", "adult"))
    assert classroom.action_for("violence", "image") is Action.BLOCK
    assert public.action_for("sexual", "prompt") is Action.BLOCK
    assert public.action_for("sexual", "image") is Action.CENSOR
    assert adult.action_for("sexual", "prompt") is Action.ALLOW
    assert len({classroom.fingerprint, public.fingerprint, adult.fingerprint}) == 3
    for p in (classroom, public, adult):
        assert p.action_for("minor", "prompt") is Action.ALLOW  # an age word alone is never a problem


def test_user_file_extends_a_profile_and_changes_fingerprint(tmp_path):
    path = write(tmp_path, 'extends = "adult"\nname = "host"\n[categories.violence]\naction = "block"\n')
    policy = load_policy(path)
    assert policy.name == "host"
    assert policy.action_for("violence", "prompt") is Action.BLOCK
    assert policy.action_for("sexual", "prompt") is Action.ALLOW  # inherited from adult
    assert policy.fingerprint != load_policy("adult").fingerprint


def test_user_file_can_extend_another_file(tmp_path):
    write(tmp_path, 'extends = "classroom"\n[categories.ip_character]\naction = "block"\n', "school.toml")
    path = write(tmp_path, 'extends = "school.toml"\n[categories.violence]\naction = "warn"\n')
    policy = load_policy(path)
    assert policy.action_for("ip_character", "prompt") is Action.BLOCK
    assert policy.action_for("violence", "prompt") is Action.WARN
    assert policy.action_for("sexual", "prompt") is Action.BLOCK


def test_list_paths_belong_to_the_file_that_names_them(tmp_path):
    from sdguard.prompt_guard import check_prompt

    (tmp_path / "names.txt").write_text("Jane Example\n")
    write(tmp_path, 'extends = "adult"\n[prompt]\nsemantic = "off"\n[lists]\nreal_persons = "names.txt"\n',
          "parent.toml")
    for child in ("a", "b"):
        (tmp_path / child).mkdir()
        # A names.txt beside the child must not be used in place of the parent's.
        (tmp_path / child / "names.txt").write_text("Someone Else\n")
        write(tmp_path / child, 'extends = "../parent.toml"\n', "child.toml")
    first, second = (load_policy(tmp_path / child / "child.toml") for child in ("a", "b"))
    # Kept relative (to the loaded file), so the fingerprint does not depend on the install folder.
    assert Path(first.section("lists")["real_persons"]) == Path("..", "names.txt")
    assert check_prompt("Jane Example nude", policy=first).codes == ("real_person_sexual",)
    assert first.fingerprint == second.fingerprint
    # A list named by a file loaded from another working folder is still the same file.
    deep = tmp_path / "a" / "deep"
    deep.mkdir()
    write(deep, 'extends = "../child.toml"\n', "child.toml")
    assert check_prompt("Jane Example nude", policy=load_policy(deep / "child.toml")).codes == ("real_person_sexual",)


def test_extends_loop_is_an_error(tmp_path):
    write(tmp_path, 'extends = "b.toml"\n', "a.toml")
    write(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(PolicyError, match="deeper than"):
        load_policy(tmp_path / "a.toml")


@pytest.mark.parametrize("text, line, words", [
    ('extends = "adult"\n\n[categories.minor_sexual]\naction = "warn"\n', 4, "cannot be relaxed"),
    ('extends = "adult"\n[categories.real_person_sexual]\n# comment\naction = "allow"\n', 4, "cannot be relaxed"),
    ('[categories.minor_sexual]\nstage_actions = { image = "censor" }\n', 2, "cannot be relaxed"),
    ('extends = "adult"\n[categories.blocked_hash]\naction = "warn"\n', 3, "cannot be relaxed"),
    ('[categories.minor_sexual]\nthresholds = { lexical = 1.0 }\n[categories.real_person_sexual]\n'
     'thresholds = { lexical = 1.0 }\n[categories.sexual]\naction = "allow"\n', None, None),
    ('[combinations.minor_sexual]\nall = ["minor"]\nany = ["violence"]\n', 1, "cannot be edited"),
    ('[categories.sexual]\naction = "explode"\n', 2, "not one of allow, warn, censor, block"),
    ('[prompt]\nsemantic = "sometimes"\n', 2, "not one of required, optional, off"),
    ('[prompt]\nsemantics = "off"\n', 2, "unknown key 'semantics'"),
    ('colour = "red"\n', 1, "unknown key 'colour'"),
    ('[audit]\nprompt_text = "yes"\n', 2, "not one of none, allowed, all"),
    ('[audit]\nstore_blocked_prompt_text = true\n', 2, 'it was replaced by prompt_text = "all"'),
    ('[categories.sexual]\nthresholds = { lexical = 2 }\n', 2, "from 0 to 1"),
    ('[categories.drugs]\nthresholds = { lexical = 1.0 }\n', 1, "needs an action"),
    ('name = "x"\n[categories\n', 2, "not valid TOML"),
    # Out of range, a setting would switch a check off quietly (0 tokens read, no tiles, no faces).
    ('[prompt]\nsemantic_max_tokens = 0\n', 2, "prompt.semantic_max_tokens = 0: must be a number from 16 to 512"),
    ('[image]\n\nmin_face_px = 100000\n', 3, "from 8 to 128"),
    ('[image]\ntile_overlap = 1.5\n', 2, "from 0.0 to 0.75"),
    ('[monitor]\nschedule = [0.3, 5.0]\n', 2, "each item must be a number from 0.0 to 1.0"),
    ('[monitor]\nschedule = ["a"]\n', 2, "each item must be a number"),
    ('[watermark]\nstrength = true\n', 2, "must be float"),
    ('[prompt]\nsemantic_max_tokens = 16\n[monitor]\nschedule = [0.0, 1.0]\n', None, None),
    # Misspelt names would act later: an unknown backend fails every image, an unknown stage never applies.
    ('[image]\nbackends = ["nudnet", "age"]\n', 2, "image.backends: no image backend named 'nudnet'"),
    ('[image]\nrequired = ["nudenet", "Age"]\n', 2, "image.required: no image backend named 'Age'"),
    ('[monitor]\nbackends = ["nsfw"]\n', 2, "monitor.backends: no image backend named 'nsfw'"),
    ('[categories.violence.stage_actions]\nimages = "allow"\n', 2, "no stage 'images'"),
    ('[categories.violence]\nstage_actions = { preview = "allow", image = "warn" }\n', None, None),
    ('[categories.violence]\nstage_actions = "block"\n', 2, "stage_actions in [categories.violence] must be a table"),
    ('[categories.violence]\nstage_actions = ["image"]\n', 2, "must be a table"),
    ('[categories.violence]\nthresholds = "x"\n', 2, "thresholds in [categories.violence] must be a table"),
    ('name = "x"\ncategories = 5\n', 2, "'categories' must be a table"),
])
def test_bad_files_name_the_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    if words is None:  # the control: restating the built-in values is fine
        load_policy(path)
        return
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert words in str(err.value)
    assert f"{path}:{line}:" in str(err.value)
    assert err.value.line == line


def test_protected_thresholds_may_only_get_stricter(tmp_path):
    stricter = write(tmp_path, '[categories.minor_sexual]\nthresholds = { lexical = 0.5 }\n', "ok.toml")
    assert load_policy(stricter).threshold("minor_sexual", "lexical") == 0.5


def test_relaxing_sexual_does_not_relax_the_minor_sexual_combination(tmp_path):
    path = write(tmp_path, 'extends = "adult"\n[categories.sexual]\nthresholds = { semantic = 1.0 }\n')
    policy = load_policy(path)
    assert policy.threshold("sexual", "semantic") == 1.0
    assert policy.combo_threshold("sexual", "semantic", 1.0) == load_policy("public").threshold("sexual", "semantic")


def test_missing_profile_or_file():
    with pytest.raises(FileNotFoundError, match="profiles: classroom, public, adult"):
        load_policy("nonexistent-profile")


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


def test_policy_is_read_only():
    policy = load_policy()
    with pytest.raises(TypeError):
        policy.data["categories"]["sexual"]["action"] = "allow"  # type: ignore[index]


@pytest.mark.parametrize("image", [
    '[image]\nbackends = []\nrequired = []\n',
    '[image]\nbackends = ["nudenet", "opennsfw"]\nrequired = ["nudenet", "opennsfw"]\n',
    '[image]\nrequired = ["age"]\n',
])
def test_image_stage_must_keep_detecting_minor_sexual(tmp_path, image):
    path = write(tmp_path, 'extends = "adult"\n' + image)
    with pytest.raises(PolicyError, match="minor_sexual could not be detected"):
        load_policy(path)


def test_image_backends_may_be_swapped_for_ones_that_feed_the_same_cues(tmp_path):
    image = 'extends = "adult"\n[image]\nbackends = ["nudenet", "wd14"]\nrequired = ["nudenet", "wd14"]\n'
    # The previews' default subset (nudenet, age) names a backend this image stage no longer runs.
    with pytest.raises(PolicyError, match=r"\[monitor\] backends must be a non-empty subset"):
        load_policy(write(tmp_path, image))
    policy = load_policy(write(tmp_path, image + '[monitor]\nbackends = ["nudenet", "wd14"]\n'))
    assert policy.section("image")["required"] == ("nudenet", "wd14")


def test_readme_shows_the_current_fingerprints():
    # The README's sample output quotes fingerprints; any change to a built-in policy changes them.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    host = re.search(r"examples/host-policy\.toml \(policy model-host, fingerprint ([0-9a-f]{16})\)", readme)
    public = re.search(r'"profile": "public", "fingerprint": "([0-9a-f]{16})"', readme)
    examples = Path(__file__).resolve().parents[2] / "examples" / "host-policy.toml"
    assert host and host.group(1) == load_policy(examples).fingerprint
    assert public and public.group(1) == load_policy("public").fingerprint


def test_stages_are_the_stages_of_the_guards():
    from sdguard import image_guard, model_guard, preview_check, prompt_guard

    assert {m.STAGE for m in (prompt_guard, model_guard, preview_check, image_guard)} == set(STAGES)
