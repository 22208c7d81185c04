"""The preview stage's backend subset: which image backends judge previews, and what a policy may drop."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sdguard import Action, load_policy  # noqa: E402
from sdguard.errors import PolicyError  # noqa: E402
from sdguard.image_guard import check_images  # noqa: E402
from sdguard.preview_check import check_latent  # noqa: E402
from sdguard.verdict import GUARD_UNAVAILABLE  # noqa: E402

from _image_fakes import FakeDetector, fake_backends, marked_image  # noqa: E402


class MarkedDecoder:
    """Ignores the latent and 'decodes' a nude marked image, so the scripted NudeNet fires."""

    name, upscale = "marked", 1

    def decode(self, x0):
        image = torch.from_numpy(marked_image(age=35, nude=True, size=64)).permute(2, 0, 1).float() / 255.0
        return image[None].expand(x0.shape[0], -1, -1, -1)


@pytest.fixture
def registry(monkeypatch):
    """The scripted backends stand in for the process-wide ones (what the default checker loads)."""
    backends = fake_backends()
    monkeypatch.setattr("sdguard.image_backends._cache", dict(backends))
    return backends


def policy_with(tmp_path, body: str, extends: str = "public"):
    path = tmp_path / "p.toml"
    path.write_text(f'extends = "{extends}"\n{body}\n')
    return load_policy(path)


def preview_backends(policy):
    return tuple(policy.section("monitor")["backends"])


def test_profiles_choose_their_preview_backends():
    assert preview_backends(load_policy("public")) == ("nudenet", "age")
    assert preview_backends(load_policy("adult")) == ("nudenet", "age")
    assert preview_backends(load_policy("classroom")) == ("nudenet", "opennsfw", "age")


def test_default_checker_runs_only_the_preview_backends(registry):
    check = check_latent(torch.zeros(1, 4, 8, 8), load_policy("public"), MarkedDecoder())
    assert check.verdicts[0].action is Action.CENSOR  # the scripted NudeNet still fires
    assert registry["nudenet"].calls and not registry["opennsfw"].calls


def test_classroom_previews_meet_the_whole_ensemble(registry):
    check = check_latent(torch.zeros(1, 4, 8, 8), load_policy("classroom"), MarkedDecoder())
    assert check.verdicts[0].action is Action.BLOCK
    assert registry["nudenet"].calls and registry["opennsfw"].calls


def test_a_failing_preview_backend_still_blocks(registry, monkeypatch):
    monkeypatch.setitem(registry, "nudenet", FakeDetector("nudenet", fail=True))
    monkeypatch.setattr("sdguard.image_backends._cache", dict(registry))
    check = check_latent(torch.zeros(1, 4, 8, 8), load_policy("adult"), MarkedDecoder())
    assert check.verdicts[0].action is Action.BLOCK
    assert check.verdicts[0].reasons[0].code == GUARD_UNAVAILABLE


def test_only_keeps_required_backends_required_and_the_default_unchanged():
    broken = fake_backends(opennsfw=FakeDetector("opennsfw", fail=True))
    image = marked_image(age=35)
    policy = load_policy("public")
    # The whole ensemble (default) and a subset that names it: the required backend's failure blocks.
    for only in (None, ["nudenet", "opennsfw"]):
        verdict = check_images([image], policy, backends=broken, only=only)[0]
        assert verdict.reasons[0].code == GUARD_UNAVAILABLE
    # A subset that leaves it out does not run it.
    verdict = check_images([image], policy, backends=broken, only=["nudenet", "age"])[0]
    assert verdict.action is Action.ALLOW and set(verdict.details["scores"]) == {"nudenet", "age"}


@pytest.mark.parametrize(("backends", "message"), [
    ('["nudenet"]', "feeds 'minor'"),
    ('["age"]', "feeds 'sexual'"),
    ("[]", "non-empty subset"),
    ('["nudenet", "age", "wd14"]', "non-empty subset"),  # wd14 is not in this policy's [image] ensemble
])
def test_a_preview_subset_that_weakens_minor_sexual_is_refused(tmp_path, backends, message):
    with pytest.raises(PolicyError, match=message) as refused:
        policy_with(tmp_path, f"[monitor]\nbackends = {backends}", extends="adult")
    assert refused.value.line == 3  # the file's "backends = ..." line


def test_an_optional_image_backend_does_not_count_as_a_kept_feeder(tmp_path):
    with pytest.raises(PolicyError, match=r"feeds 'sexual' \(nudenet\)"):
        policy_with(tmp_path, '[image]\nrequired = ["nudenet", "age"]\n[monitor]\nbackends = ["opennsfw", "age"]')
    assert preview_backends(policy_with(tmp_path, '[image]\nrequired = ["opennsfw", "age"]\n'
                                                  '[monitor]\nbackends = ["opennsfw", "age"]')) == ("opennsfw", "age")
