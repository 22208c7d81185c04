"""The MPNet encoder (numpy) against transformers on a small random model the test builds, the
MiniLM → MPNet chain of the semantic stage, and how a policy asking for MPNet fails when it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from sdguard import load_policy, prompt_semantic, text_encoder, weights  # noqa: E402
from sdguard.errors import GuardUnavailable  # noqa: E402
from sdguard.prompt_guard import check_prompts  # noqa: E402

WORDS = ("a red bicycle near the old harbour at dawn painting of woman nude portrait knight forest "
         "dragon castle blood soldier battle cat dog sitting on sofa").split()
CONFIG = {"model_type": "mpnet", "hidden_act": "gelu", "hidden_size": 32, "num_attention_heads": 4,
          "num_hidden_layers": 2, "intermediate_size": 64, "max_position_embeddings": 80,
          "relative_attention_num_buckets": 32, "layer_norm_eps": 1e-5, "vocab_size": 0,
          "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
PROMPTS = ["a red bicycle", "", "painting of a woman near the old harbour at dawn",
           " ".join(WORDS * 3), "dragon", "zzz unknown words"]


def _tokenizer_json(vocab: dict[str, int]) -> str:
    """A WordPiece tokenizer with all-mpnet-base-v2's pipeline (BERT normaliser and pre-tokenizer,
    RoBERTa's <s> ... </s>)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok.to_str()


def _tiny_mpnet(folder: Path, seed: int = 0) -> Path:
    """A random MPNet in all-mpnet-base-v2's file layout: model.safetensors, tokenizer.json, config.json."""
    from safetensors.numpy import save_file

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *dict.fromkeys(WORDS)])}
    config = {**CONFIG, "vocab_size": len(vocab)}
    rng = np.random.default_rng(seed)
    d, inner = config["hidden_size"], config["intermediate_size"]

    def w(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": w(len(vocab), d),
         "embeddings.position_embeddings.weight": w(config["max_position_embeddings"], d),
         "embeddings.LayerNorm.weight": 1 + w(d), "embeddings.LayerNorm.bias": w(d),
         "encoder.relative_attention_bias.weight": w(32, config["num_attention_heads"]) * 10}
    for i in range(config["num_hidden_layers"]):
        for key, (out, inp) in {"attention.attn.q": (d, d), "attention.attn.k": (d, d), "attention.attn.v": (d, d),
                                "attention.attn.o": (d, d), "intermediate.dense": (inner, d),
                                "output.dense": (d, inner)}.items():
            t[f"encoder.layer.{i}.{key}.weight"], t[f"encoder.layer.{i}.{key}.bias"] = w(out, inp), w(out)
        for key in ("attention.LayerNorm", "output.LayerNorm"):
            t[f"encoder.layer.{i}.{key}.weight"], t[f"encoder.layer.{i}.{key}.bias"] = 1 + w(d), w(d)
    folder.mkdir(parents=True)
    save_file(t, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text(_tokenizer_json(vocab), "utf-8")
    (folder / "config.json").write_text(json.dumps(config), "utf-8")
    return folder


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """The tiny MPNet where the weights manifest looks first ($SDGUARD_WEIGHTS_DIR)."""
    _tiny_mpnet(tmp_path / "weights" / "all-mpnet-base-v2")
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "weights"))
    monkeypatch.setattr(text_encoder, "_CACHE", {})
    return text_encoder.load_encoder("mpnet")


def _reference(folder: Path, prompts: list[str]) -> np.ndarray:
    """transformers' MPNetModel on the same files, mean-pooled and normalised as sentence-transformers does."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    config = transformers.MPNetConfig(**json.loads((folder / "config.json").read_text()))
    model = transformers.MPNetModel(config, add_pooling_layer=False).eval()
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    # all-mpnet-base-v2 carries a pooler and position ids the embedding does not use.
    assert all(k.startswith(("pooler.", "embeddings.position_ids")) for k in (*missing, *unexpected))
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()  # all-mpnet-base-v2's file pads to 128; sentence-transformers pads per batch and masks
    tok.enable_truncation(min(128, config.max_position_embeddings - 2))
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([tok.encode(p).ids])
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0)
            out.append(torch.nn.functional.normalize(h, dim=0).numpy())
    return np.stack(out)


def test_numpy_mpnet_matches_transformers(tiny):
    ours = tiny.encode(PROMPTS)
    ref = _reference(tiny.model_dir, PROMPTS)
    assert tiny.dim == 32 and tiny.max_positions == 78  # positions 0 and 1 are MPNet's padding
    # The tanh GELU differs from transformers' erf GELU by < 1e-3 per unit.
    assert ((ours * ref).sum(axis=1) >= 0.9995).all()


def test_the_relative_bias_matters(tiny, monkeypatch):
    # Without the per-layer relative-position bias the embeddings differ: the bias is really applied.
    with_bias = tiny.encode(PROMPTS[2:4])
    monkeypatch.setattr(tiny, "_relative", np.zeros_like(tiny._relative))
    assert not np.allclose(with_bias, tiny.encode(PROMPTS[2:4]), atol=1e-3)


@pytest.mark.parametrize("length", [1, 9, 40, 200, 512])
def test_relative_buckets_match_transformers(length):
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.mpnet.modeling_mpnet")
    position = torch.arange(length)
    ref = modeling.MPNetEncoder.relative_position_bucket(position[None, :] - position[:, None])
    assert (text_encoder._relative_buckets(length, 32) == ref.numpy()).all()


def test_mpnet_batches_match_prompts_encoded_alone(tiny, monkeypatch):
    monkeypatch.setattr(text_encoder, "BATCH_TOKENS", 12)
    batched = tiny.encode(PROMPTS)
    alone = np.stack([tiny.encode([p])[0] for p in PROMPTS])
    np.testing.assert_allclose(batched, alone, atol=2e-5)


def test_missing_mpnet_names_the_fetch_commands(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path))
    monkeypatch.setattr(weights, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(GuardUnavailable) as e:
        text_encoder.load_encoder("mpnet")
    # every missing file's command (it used to name only the first)
    commands = "; ".join(f"sdguard weights fetch {entry}" for entry in text_encoder.MPNET_WEIGHTS)
    assert f"{commands} (or put the files in {tmp_path}" in str(e.value)


def test_an_unreadable_weights_manifest_makes_mpnet_unavailable(tmp_path, monkeypatch):
    broken = tmp_path / "MANIFEST.toml"
    broken.write_text("[all_mpnet_base_v2\n")
    monkeypatch.setattr(weights, "bundled_weights_dir", lambda: tmp_path)
    with pytest.raises(GuardUnavailable, match="cannot read the weights manifest"):
        text_encoder.find_model_dir("mpnet")


def test_another_models_tokenizer_is_refused(tmp_path, monkeypatch):
    # MiniLM's tokenizer.json in MPNet's folder used to load and read prompts as other words.
    folder = _tiny_mpnet(tmp_path / "weights" / "all-mpnet-base-v2")
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    del tokenizer["model"]["vocab"]["dragon"]  # one token fewer than config.json's vocab_size
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "weights"))
    monkeypatch.setattr(text_encoder, "_CACHE", {})
    with pytest.raises(GuardUnavailable, match="come from different models"):
        text_encoder.load_encoder("mpnet")


def test_mpnet_files_in_different_folders_are_refused(tmp_path, monkeypatch):
    _tiny_mpnet(tmp_path / "env" / "all-mpnet-base-v2")
    (tmp_path / "env" / "all-mpnet-base-v2" / "config.json").rename(tmp_path / "config.json")
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "env"))
    monkeypatch.setattr(weights, "cache_dir", lambda: tmp_path / "cache")
    (tmp_path / "cache" / "all-mpnet-base-v2").mkdir(parents=True)
    (tmp_path / "config.json").rename(tmp_path / "cache" / "all-mpnet-base-v2" / "config.json")
    with pytest.raises(GuardUnavailable, match="must share a folder"):
        text_encoder.find_model_dir("mpnet")


def test_unknown_encoder_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown sentence encoder 'bert'"):
        text_encoder.find_model_dir("bert")


# -- the chain -----------------------------------------------------------------------------------

def _follow(first: prompt_semantic.PromptHead, escalate: float, threshold: float, dim: int = 32,
            follows: str | None = None) -> prompt_semantic.PromptHead:
    rng = np.random.default_rng(1)
    params = {"hidden.weight": rng.standard_normal((dim, 8)).astype(np.float32), "hidden.bias": np.zeros(8, np.float32),
              "out.weight": rng.standard_normal((8, 2)).astype(np.float32), "out.bias": np.zeros(2, np.float32)}
    return prompt_semantic.PromptHead("test-follow", "1", first.categories, {c: threshold for c in first.categories},
                                      params, None, {c: escalate for c in first.categories}, "mpnet",
                                      first.model if follows is None else follows)


BENIGN = ["a red bicycle leaning on a wall", "two dogs playing in the snow", "a bowl of fruit on a table"]
HARMFUL = ["nude woman lying on a bed, nsfw, explicit", "a man stabbing a screaming victim, blood everywhere, gore"]


def test_mpnet_reads_only_what_the_minilm_head_escalates(tiny, monkeypatch):
    (first,) = prompt_semantic.default_heads()
    prompts = BENIGN + HARMFUL
    _, minilm_stage = prompt_semantic.semantic_scores(prompts, 128, [first])
    minilm, _ = prompt_semantic.semantic_scores(prompts, 128, [first], use_gate=False)
    # Escalate at a score between the harmful prompts' MiniLM scores and the benign ones'.
    escalate = float(minilm[len(BENIGN):].max(axis=1).min()) - 1e-4
    follow = _follow(first, escalate, 0.5)
    read: list[str] = []
    encode = tiny.encode
    monkeypatch.setattr(tiny, "encode", lambda texts, max_tokens=128: read.extend(texts) or encode(texts, max_tokens))
    scores, stage = prompt_semantic.semantic_scores(prompts, 128, [first, follow])
    reached = (minilm_stage == 1) & (minilm >= escalate).any(axis=1)
    assert read == [p for p, r in zip(prompts, reached) if r] and reached[len(BENIGN):].all()
    np.testing.assert_array_equal(stage, np.where(reached, 2, minilm_stage))
    np.testing.assert_allclose(scores[reached], follow.scores(encode([p for p, r in zip(prompts, reached) if r])),
                               atol=1e-6)
    # A prompt MiniLM did not escalate keeps the MiniLM score it was cleared with.
    held = stage == 1
    np.testing.assert_allclose(scores[held], minilm[held], atol=1e-6)
    assert (scores[held] < escalate).all()


def test_findings_name_the_stage_that_decided(tiny, tmp_path):
    (first,) = prompt_semantic.default_heads()
    follow = _follow(first, 0.0001, 0.5)
    policy = load_policy("public")
    found = prompt_semantic.semantic_findings(BENIGN + HARMFUL, policy, [first, follow])
    models = {f.model for row in found for f in row}
    assert "test-follow@1" in models
    for row in found:
        for f in row:
            if f.model == "test-follow@1":
                # MPNet's scores have their own scale, hence their own signal and thresholds.
                assert f.source == "semantic_mpnet" and f.threshold == policy.threshold(f.category, "semantic_mpnet")
                assert f.threshold != policy.threshold(f.category, "semantic")
            elif f.model == "test-follow@1 gate":
                assert f.threshold == 0.0001  # cleared by the escalation thresholds on MiniLM's score
            else:
                assert f.model == f"{first.model} gate"


def test_a_lowered_threshold_sends_every_prompt_to_the_last_head(tiny, tmp_path, monkeypatch):
    (first,) = prompt_semantic.default_heads()
    follow = _follow(first, 0.99, 0.5)
    path = tmp_path / "p.toml"
    path.write_text('extends = "public"\n[categories.sexual]\nthresholds = { semantic = 0.4 }\n')
    minilm = text_encoder.load_encoder()
    monkeypatch.setattr(minilm, "encode", lambda *a, **k: pytest.fail("MiniLM is not needed"))
    monkeypatch.setattr(minilm, "bag_of_words", lambda *a, **k: pytest.fail("the gate is not needed"))
    found = prompt_semantic.semantic_findings(BENIGN, load_policy(path), [first, follow])
    assert all(f.model == "test-follow@1" for row in found for f in row)


def test_without_the_gate_only_the_last_heads_encoder_is_needed(tiny, tmp_path, monkeypatch):
    (first,) = prompt_semantic.default_heads()
    follow = _follow(first, 0.99, 0.5)
    monkeypatch.setenv(text_encoder.MODEL_DIR_ENV, str(tmp_path / "no-minilm"))
    with pytest.raises(GuardUnavailable, match="lacks"):
        prompt_semantic.semantic_scores(BENIGN, 128, [first, follow])
    scores, stage = prompt_semantic.semantic_scores(BENIGN, 128, [first, follow], use_gate=False)
    np.testing.assert_allclose(scores, follow.scores(tiny.encode(BENIGN)), atol=1e-6)
    assert (stage == 2).all()


@pytest.mark.parametrize("follows, words", [("sdguard-prompt-head@2", "follows sdguard-prompt-head@2"),
                                            ("", "follows no head")])
def test_a_head_that_follows_another_head_is_refused(follows, words):
    (first,) = prompt_semantic.default_heads()
    with pytest.raises(GuardUnavailable, match=words):
        prompt_semantic.semantic_scores(["a cat"], 128, [first, _follow(first, 0.1, 0.5, follows=follows)])


def test_a_following_head_of_another_width_is_unavailable(tiny):
    (first,) = prompt_semantic.default_heads()
    with pytest.raises(GuardUnavailable, match="32-dimensional embeddings, the head test-follow@1 reads 50"):
        prompt_semantic.semantic_scores(["nude woman, nsfw"], 128, [first, _follow(first, 0.0001, 0.5, dim=50)])


def test_bundled_mpnet_head_follows_the_bundled_minilm_head():
    first, follow = prompt_semantic.default_heads("mpnet")
    assert follow.follows == first.model and follow.encoder == "mpnet" and follow.gate is None
    assert follow.params["hidden.weight"].shape[0] == 768
    # Escalation casts a wider net than MiniLM's own thresholds: it passes 5 % of captions, not 0.7 %.
    assert all(follow.gate_thresholds[c] < first.thresholds[c] for c in first.categories)


def test_follow_head_round_trips_through_a_file(tmp_path):
    (first,) = prompt_semantic.default_heads()
    follow = _follow(first, 0.1, 0.3)
    path = tmp_path / "f.safetensors"
    prompt_semantic.save_head(path, follow.params, None, {
        "name": "f", "version": "2", "categories": ",".join(first.categories), "encoder": "sentence-transformers/all-mpnet-base-v2",
        "follows": first.model, "thresholds": json.dumps(follow.thresholds), "gate_thresholds": json.dumps(follow.gate_thresholds)})
    loaded = prompt_semantic.load_head(path)
    assert (loaded.encoder, loaded.follows, loaded.gate, loaded.thresholds) == ("mpnet", first.model, None, follow.thresholds)


def test_a_head_naming_an_unknown_encoder_is_unavailable(tmp_path):
    (first,) = prompt_semantic.default_heads()
    path = tmp_path / "f.safetensors"
    prompt_semantic.save_head(path, first.params, first.gate, {
        "name": "f", "version": "2", "categories": ",".join(first.categories), "encoder": "openai/clip",
        "thresholds": json.dumps(first.thresholds), "gate_thresholds": json.dumps(first.gate_thresholds)})
    with pytest.raises(GuardUnavailable, match="unknown encoder 'openai/clip'"):
        prompt_semantic.load_head(path)


# -- the policy ----------------------------------------------------------------------------------

def _mpnet_policy(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / f"{mode}.toml"
    path.write_text(f'extends = "public"\n[prompt]\nsemantic = "{mode}"\nsemantic_encoder = "mpnet"\n')
    return path


def test_a_policy_requiring_mpnet_refuses_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(tmp_path / "none"))
    monkeypatch.setattr(weights, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(text_encoder, "_CACHE", {})
    with pytest.raises(GuardUnavailable, match="all_mpnet_base_v2"):
        check_prompts([("a cat", "")], load_policy(_mpnet_policy(tmp_path, "required")))
    # "optional" skips the stage and says so; it never falls back to MiniLM alone silently.
    (verdict,) = check_prompts([("a cat", "")], load_policy(_mpnet_policy(tmp_path, "optional")))
    assert "all_mpnet_base_v2" in verdict.details["skipped"]["semantic"]


@pytest.mark.parametrize("profile", ["classroom", "public", "adult"])
def test_a_middling_mpnet_score_is_not_a_minor_sexual_cue(profile):
    from sdguard.verdict import Finding, decide

    policy = load_policy(profile)
    minor = Finding("minor", 1.0, "lexical", 1.0, term="baby")
    for score, derived in ((0.5, False), (0.95, True)):
        semantic = Finding("sexual", score, "semantic_mpnet", policy.threshold("sexual", "semantic_mpnet"))
        assert ("minor_sexual" in decide("prompt", [minor, semantic], policy).codes) == derived


def test_a_policy_naming_an_unknown_encoder_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('extends = "public"\n[prompt]\nsemantic_encoder = "clip"\n')
    with pytest.raises(Exception, match="semantic_encoder"):
        load_policy(path)


def test_real_mpnet_matches_transformers_on_eval_prompts():
    """all-mpnet-base-v2 itself, where its weights are installed (`sdguard weights fetch`)."""
    found = weights.find("all_mpnet_base_v2")
    if found is None:
        pytest.skip("all-mpnet-base-v2 is not installed")
    pytest.importorskip("transformers")
    rows = [json.loads(line)["prompt"] for name in ("nudity_sixcd", "benign_coco10k")
            for line in (Path("/work/shared/eval") / f"{name}.jsonl").read_text("utf-8").splitlines()[:60]] \
        if Path("/work/shared/eval").is_dir() else PROMPTS
    ours = text_encoder.load_encoder("mpnet").encode(rows)
    ref = _reference(found.path.parent, rows)
    assert ((ours * ref).sum(axis=1) >= 0.9995).all()
