"""decide(), combinations, merge, serialisation and fail-closed verdicts."""

from __future__ import annotations

import json

import pytest

from sdguard import Action, Finding, Verdict, load_policy
from sdguard.verdict import GUARD_UNAVAILABLE, decide, unavailable


def lex(category, term, field="prompt", span=(0, 4)):
    return Finding(category, 1.0, "lexical", 1.0, term=term, span=span, field=field)


@pytest.mark.parametrize("profile", ["classroom", "public", "adult"])
def test_minor_and_sexual_cues_derive_minor_sexual_everywhere(profile):
    v = decide("prompt", [lex("minor", "child"), lex("sexual", "nude")], load_policy(profile))
    assert v.action is Action.BLOCK
    assert "minor_sexual" in v.codes
    assert v.categories["minor_sexual"] == 1.0


@pytest.mark.parametrize("profile", ["classroom", "public", "adult"])
def test_minor_cue_alone_allows(profile):
    v = decide("prompt", [lex("minor", "child")], load_policy(profile))
    assert v.action is Action.ALLOW
    assert v.reasons == ()
    assert v.categories == {"minor": 1.0}


def test_real_person_needs_a_sexual_cue():
    policy = load_policy("adult")
    assert decide("prompt", [lex("real_person", "someone")], policy).action is Action.ALLOW
    v = decide("prompt", [lex("real_person", "someone"), lex("sexual", "nude")], policy)
    assert v.action is Action.BLOCK and v.codes == ("real_person_sexual",)


def test_scores_below_threshold_are_kept_but_do_not_fire():
    policy = load_policy("public")
    v = decide("prompt", [Finding("sexual", 0.3, "semantic", 0.5, model="head")], policy)
    assert v.action is Action.ALLOW
    assert v.categories["sexual"] == 0.3


def test_combination_uses_builtin_thresholds_when_policy_is_laxer(tmp_path):
    path = tmp_path / "lax.toml"
    path.write_text('extends = "adult"\n[categories.sexual]\nthresholds = { semantic = 1.0 }\n')
    policy = load_policy(path)
    sexual = Finding("sexual", 0.9, "semantic", policy.threshold("sexual", "semantic"), model="head")
    assert not sexual.fired
    v = decide("image", [lex("minor", "child"), sexual], policy)
    assert v.action is Action.BLOCK and "minor_sexual" in v.codes


def test_stage_actions_apply():
    policy = load_policy("public")
    nude = Finding("sexual", 0.9, "nudenet", 0.5, model="320n")
    assert decide("image", [nude], policy).action is Action.CENSOR
    assert decide("prompt", [nude], policy).action is Action.BLOCK


def test_message_names_the_evidence():
    v = decide("prompt", [lex("sexual", "nude", span=(10, 14))], load_policy("classroom"))
    assert v.message == "sdguard: prompt block: sexual: 'nude' in prompt"
    ev = v.to_dict()["evidence"][0]
    assert ev == {"category": "sexual", "score": 1.0, "source": "lexical", "threshold": 1.0,
                  "term": "nude", "field": "prompt", "span": [10, 14], "reason": "sexual"}


def test_to_dict_is_json_and_round_trips():
    policy = load_policy("public")
    v = decide("image", [Finding("sexual", 0.75, "nudenet", 0.5, model="320n", detail="box")], policy,
               {"regions": [{"label": "X", "box": [1, 2, 3, 4]}]})
    data = json.loads(json.dumps(v.to_dict()))
    assert data["action"] == "censor"
    assert data["policy"] == {"profile": "public", "fingerprint": policy.fingerprint}
    assert data["regions"][0]["box"] == [1, 2, 3, 4]
    back = Verdict.from_dict(data)
    assert back.action is v.action and back.codes == v.codes and back.evidence == v.evidence


def test_merge_keeps_most_severe_and_max_scores():
    policy = load_policy("public")
    a = decide("prompt", [Finding("sexual", 0.2, "semantic", 0.5)], policy)
    b = decide("prompt", [lex("violence", "gore")], policy)
    m = a.merge(b)
    assert m.action is Action.WARN
    assert m.categories == {"sexual": 0.2, "violence": 1.0}
    assert m.stage == "prompt"


def test_unavailable_blocks_with_reason():
    v = unavailable("image", load_policy("adult"), "nudenet", RuntimeError("model file missing"))
    assert v.blocked
    assert v.codes == (GUARD_UNAVAILABLE,)
    assert "nudenet could not run (model file missing)" in v.message


def test_action_order():
    assert max(Action.WARN, Action.BLOCK, Action.CENSOR) is Action.BLOCK
    assert Action.ALLOW < Action.WARN < Action.CENSOR < Action.BLOCK


@pytest.mark.parametrize("profile", ["classroom", "public", "adult"])
def test_a_middling_semantic_score_is_not_a_minor_sexual_cue(profile):
    # "a mother bathing her baby": an age word and a semantic sexual score of ~0.55 (above the
    # sexual threshold) must not become the unrelaxable minor_sexual block.
    policy = load_policy(profile)
    semantic = Finding("sexual", 0.55, "semantic", policy.threshold("sexual", "semantic"), model="head")
    v = decide("prompt", [lex("minor", "baby"), semantic], policy)
    assert "minor_sexual" not in v.codes
    strong = Finding("sexual", 0.9, "semantic", policy.threshold("sexual", "semantic"), model="head")
    assert "minor_sexual" in decide("prompt", [lex("minor", "12 year old"), strong], policy).codes


@pytest.mark.parametrize("score", [float("nan"), float("-inf"), None, True, 10**400])
def test_decide_blocks_a_score_that_is_not_a_finite_number(score):
    policy = load_policy("adult")
    findings = [Finding("minor", 0.9, "age", 0.5), Finding("sexual", score, "nudenet", 0.5)]
    v = decide("image", findings, policy)
    assert v.blocked and v.codes == ("guard_unavailable",) and "the nudenet score for sexual" in v.message
