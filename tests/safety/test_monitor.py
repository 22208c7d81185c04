"""LoopMonitor: schedule, repeated and skipped steps, passes, per-item decisions, block, censor, audit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdguard import AuditLog, Blocked, load_policy  # noqa: E402
from sdguard.audit import hash_input  # noqa: E402
from sdguard.errors import PolicyError  # noqa: E402
from sdguard.monitor import LoopMonitor, check_steps  # noqa: E402
from sdguard.verdict import GUARD_UNAVAILABLE, Action, Finding, decide  # noqa: E402

FLAG = 1.0   # channel-0 value of a latent the fake checker calls sexual
CLEAN = 0.0


class BrightDecoder:
    """Channels 0-2 of the latent as the image (so a test sets what the checker sees)."""

    name, upscale = "bright", 1

    def __init__(self):
        self.calls = 0

    def decode(self, x0):
        self.calls += 1
        return x0[:, :1].expand(-1, 3, -1, -1).clamp(0, 1)


class FakeChecker:
    """Flags bright images as sexual, with a region over the whole preview."""

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, images, policy, stage):
        self.batches.append(len(images))
        out = []
        for image in images:
            score = 0.9 if image.mean() > 128 else 0.1
            h, w = image.shape[:2]
            regions = [{"label": "EXPOSED", "score": score, "box": [0, 0, w // 2, h // 2], "category": "sexual"}]
            out.append(decide(stage, [Finding("sexual", score, "nudenet", 0.5)], policy,
                              {"regions": regions if score > 0.5 else []}))
        return out


def make_policy(tmp_path, preview_action: str = "censor", extends: str = "public", **monitor):
    monitor.setdefault("background", False)
    lines = [f'extends = "{extends}"', 'name = "test"', "[monitor]", "preview_size = 32"]
    lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in monitor.items()]
    lines += ["[categories.sexual]", f'stage_actions = {{ preview = "{preview_action}", image = "block" }}']
    path = tmp_path / f"policy-{preview_action}-{len(monitor)}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_policy(path)


def latent(*values: float, size: int = 8, channels: int = 4):
    x0 = torch.zeros(len(values), channels, size, size)
    for i, v in enumerate(values):
        x0[i, 0] = v
    return x0


def monitor_for(policy, family="sd15", **kwargs):
    kwargs.setdefault("decoder", BrightDecoder())
    kwargs.setdefault("checker", FakeChecker())
    return LoopMonitor(policy, family, **kwargs)


def run(monitor, total, x0, steps=None):
    results = []
    for step in steps if steps is not None else range(total):
        results.append(monitor.on_step(step, total, x0))
    return results


# -- schedule ---------------------------------------------------------------------------------

def test_check_steps():
    assert check_steps(20, [0.3, 0.5, 0.7], True) == (5, 9, 13, 19)
    assert check_steps(20, [0.3, 0.5, 0.7], False) == (5, 9, 13)
    assert check_steps(10, [0.3], True) == (2, 9)
    assert check_steps(2, [0.3, 0.5, 0.7], True) == (0, 1)
    assert check_steps(1, [0.5], False) == (0,)
    assert check_steps(20, [0.0], False) == (0,)


def test_default_schedule_checks_four_steps_of_twenty(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    monitor.start({"host": "test"})
    results = run(monitor, 20, latent(CLEAN))
    assert [r.step for r in results if r.checked] == [5, 9, 13, 19]
    assert monitor.checker.batches == [1, 1, 1, 1]
    summary = monitor.finish()
    assert [c.step for c in summary.checks] == [5, 9, 13, 19] and summary.action is Action.ALLOW


def test_repeated_steps_are_checked_once(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    x0 = latent(CLEAN)
    results = []
    for step in range(20):                   # e.g. a per-evaluation hook under Heun: 2-3 calls per step
        for _ in range(3):
            results.append(monitor.on_step(step, 20, x0))
    assert len(monitor.checker.batches) == 4 and monitor.decoder.calls == 4
    assert results[15] is results[16] is results[17] and results[15].checked


def test_sparse_caller_still_gets_every_check(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    results = run(monitor, 20, latent(CLEAN), steps=[0, 3, 6, 12, 15, 19])
    assert [r.step for r in results if r.checked] == [6, 12, 15, 19]


def test_step_going_back_starts_a_new_pass(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    run(monitor, 10, latent(CLEAN))
    run(monitor, 10, latent(CLEAN))          # a second sampler with the same step count
    summary = monitor.finish()
    assert summary.passes == 2 and [c.step for c in summary.checks] == [2, 4, 6, 9] * 2


def test_total_change_starts_a_new_pass(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    run(monitor, 20, latent(CLEAN), steps=range(8))
    results = run(monitor, 10, latent(CLEAN))      # hires fix: 10 more steps
    assert [r.step for r in results if r.checked] == [2, 4, 6, 9]
    assert monitor.summary().passes == 2


def test_shape_change_is_never_served_a_stale_result(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    first = monitor.on_step(5, 20, latent(CLEAN))
    second = monitor.on_step(5, 20, latent(CLEAN, CLEAN))   # new batch size, same step index
    assert first.checked and second.checked and len(second.verdicts) == 2
    third = monitor.on_step(5, 20, latent(CLEAN, CLEAN).double())
    assert third is not second and third.checked


# ComfyUI's KSAMPLER passes total = len(sigmas) - 1 to every sampler (comfy/samplers.py), but
# dpm_adaptive reports its own step count (info['steps'] - 1, unbounded) and dpm_fast reports
# floor(n / 3) + 1 steps of n (comfy/k_diffusion/sampling.py, DPMSolver.dpm_solver_fast).

def test_steps_past_total_count_as_the_last_step_and_the_last_x0_is_checked_at_finish(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    results = run(monitor, 20, latent(CLEAN), steps=range(27))     # dpm_adaptive took 27 steps
    assert results[-1] is results[19]          # the same (last) step: served, not decoded again
    assert monitor.decoder.calls == 4
    summary = monitor.finish()                 # step 26's x0, read as step 19
    assert [c.step for c in summary.checks] == [5, 9, 13, 19, 19] and summary.passes == 1
    late = monitor_for(make_policy(tmp_path, "block"))
    run(late, 20, latent(CLEAN), steps=range(26))
    late.on_step(26, 20, latent(FLAG))         # unsafe only after step 19
    with pytest.raises(Blocked):
        late.finish()


def test_a_second_one_step_pass_is_checked_at_finish(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "block"))
    assert monitor.on_step(0, 1, latent(CLEAN)).checked             # a 1-step Turbo / LCM pass
    monitor.on_step(0, 1, latent(FLAG))      # a second 1-step pass: same step, so served as a repeat
    with pytest.raises(Blocked) as e:
        monitor.finish()
    assert e.value.verdict.details["step"] == 0


def test_repeated_evaluations_of_each_step_add_no_check(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    for step in range(20):
        for _ in range(2):  # Heun / DPM-2: two model evaluations per step, the same step index
            monitor.on_step(step, 20, latent(CLEAN))
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 19]
    assert monitor.decoder.calls == 4


def test_background_final_check_at_finish_waits_for_older_checks_first(tmp_path):
    checker = GatedChecker()
    monitor = monitor_for(make_policy(tmp_path, "block", background=True), checker=checker)
    run(monitor, 20, latent(FLAG), steps=range(7))   # dpm_fast: step 5's check still running
    checker.gate.set()
    with pytest.raises(Blocked) as e:
        monitor.finish()
    assert e.value.verdict.details["step"] == 5      # the older check blocks: step 6 is not decoded
    assert monitor.decoder.calls == 1
    clean = monitor_for(make_policy(tmp_path, "block", background=True), checker=GatedChecker())
    clean.checker.gate.set()
    run(clean, 20, latent(CLEAN), steps=range(7))
    assert [c.step for c in clean.finish().checks] == [5, 6]


def test_run_ending_before_its_last_step_gets_the_final_check_at_finish(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    run(monitor, 20, latent(CLEAN), steps=range(7))                # dpm_fast: 7 steps of "20"
    assert [c.step for c in monitor.finish().checks] == [5, 6]
    blocking = monitor_for(make_policy(tmp_path, "block"))
    run(blocking, 20, latent(CLEAN), steps=range(6))
    blocking.on_step(6, 20, latent(FLAG))                         # unsafe only at its last step
    with pytest.raises(Blocked) as e:
        blocking.finish()
    assert e.value.verdict.details["step"] == 6 and e.value.verdict.details["steps_saved"] == 0
    assert blocking.summary().checks == ()                         # finish reset it all the same


def test_webui_per_evaluation_hook_gets_its_final_check_at_finish(tmp_path):
    # A1111/Forge set state.sampling_step = d["i"] in the sampler callback, after step i's model
    # evaluations (modules/sd_samplers_common.py callback_state), so a per-evaluation hook
    # (on_cfg_after_cfg) reads 0, 0, 1, ..., 18 in a 20-step run and never sees step 19.
    monitor = monitor_for(make_policy(tmp_path))
    for step in [0, *range(19)]:
        monitor.on_step(step, 20, latent(CLEAN))
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 18]


def test_pass_ending_early_is_checked_before_the_next_pass(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "block"))
    run(monitor, 20, latent(CLEAN), steps=range(6))
    monitor.on_step(6, 20, latent(FLAG))
    with pytest.raises(Blocked) as e:
        monitor.on_step(0, 10, latent(CLEAN))   # a second sampler starts: the first pass ended at 6
    assert e.value.verdict.details["step"] == 6


def test_run_ending_early_without_check_final_gets_no_extra_check(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, check_final=False))
    run(monitor, 20, latent(CLEAN), steps=range(7))
    assert [c.step for c in monitor.finish().checks] == [5]


def test_disabled_monitor_checks_nothing(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, enabled=False))
    assert not any(r.checked for r in run(monitor, 20, latent(FLAG)))
    assert monitor.checker.batches == []


def test_schedule_takes_what_the_policy_schema_takes(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, schedule=[0.0, 0.5]))   # `sdguard policy check` accepts 0
    assert [r.step for r in run(monitor, 20, latent(CLEAN)) if r.checked] == [0, 9, 19]
    with pytest.raises(PolicyError, match="schedule"):
        monitor_for(make_policy(tmp_path, schedule=[0.5, 1.5]))


def test_bad_input_is_a_clear_error(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    with pytest.raises(ValueError, match="need total >= 1 and step >= 0"):
        monitor.on_step(-1, 20, latent(CLEAN))
    with pytest.raises(ValueError, match="need total >= 1 and step >= 0"):
        monitor.on_step(0, 0, latent(CLEAN))
    with pytest.raises(ValueError, match="has 4 channels; got 16"):
        monitor.on_step(0, 20, latent(CLEAN, channels=16))


# -- decisions --------------------------------------------------------------------------------

def test_block_raises_with_step_accounting_and_stays_blocked(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "block"))
    with pytest.raises(Blocked) as e:
        run(monitor, 20, latent(FLAG))
    verdict = e.value.verdict
    assert verdict.blocked and verdict.stage == "preview" and verdict.codes == ("sexual",)
    assert verdict.details["step"] == 5 and verdict.details["total_steps"] == 20
    assert verdict.details["steps_saved"] == 14 and verdict.details["fraction"] == 0.3
    assert "sexual" in str(e.value)
    with pytest.raises(Blocked):              # hosts that swallow the first exception cannot go on
        monitor.on_step(6, 20, latent(CLEAN))
    summary = monitor.finish()
    assert summary.blocked_at == 5 and summary.steps_saved == 14 and summary.action is Action.BLOCK
    monitor.on_step(0, 20, latent(CLEAN))      # finish() reset it for the next run


def test_only_the_flagged_item_is_censored(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "censor"))
    x0 = latent(CLEAN, FLAG, size=32)
    x0[1, 0, ::2, ::2] = 0.6                  # a fine pattern that pixelation must wipe out
    results = run(monitor, 20, x0, steps=range(6))
    checked = results[5]
    assert [v.action for v in checked.verdicts] == [Action.ALLOW, Action.CENSOR]
    assert [v.details["item"] for v in checked.verdicts] == [0, 1]
    assert checked.previews[0] is None
    censored = checked.previews[1]
    original = (x0[1, 0] * 255).round().to(torch.uint8).numpy()
    assert censored.shape == (32, 32, 3)
    # The region (top-left quarter plus margin) is pixelated; the rest is untouched.
    assert not (censored[:16, :16, 0] == original[:16, :16]).all()
    assert (censored[20:, 20:, 0] == original[20:, 20:]).all()
    later = monitor.on_step(6, 20, x0)
    assert not later.checked and later.previews[1] is censored and later.hidden


def test_censored_previews_stay_hidden_into_a_hires_fix_pass(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "censor"))
    assert run(monitor, 10, latent(FLAG))[-1].hidden
    second = run(monitor, 8, latent(FLAG, size=16), steps=range(3))  # upscaled latent, new total
    assert monitor.summary().passes == 2
    assert all(r.hidden for r in second)   # its first steps show the content just censored


def test_the_module_docstring_example_runs(tmp_path):
    import textwrap

    import sdguard.monitor

    doc = sdguard.monitor.__doc__
    example = textwrap.dedent(doc[doc.index("::\n\n") + 3:doc.index("\n\n", doc.index("::\n\n") + 3)])
    policy = make_policy(tmp_path, "censor")
    previews = ["own 0", "own 1"]
    namespace = {"LoopMonitor": lambda policy, family: monitor_for(policy), "policy": policy, "total": 20,
                 "denoised": lambda step: latent(CLEAN, FLAG if step >= 9 else CLEAN), "previews": previews}
    exec(example, namespace)  # before step 9 `result.previews` is empty; then item 1 is censored
    assert previews[0] == "own 0" and isinstance(previews[1], np.ndarray)
    assert namespace["summary"].action is Action.CENSOR


def test_censor_keeps_the_preview_hidden_after_a_clean_check(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "censor"))
    run(monitor, 20, latent(FLAG), steps=range(6))
    result = monitor.on_step(9, 20, latent(CLEAN))
    assert result.checked and result.verdicts[0].action is Action.ALLOW and result.previews[0] is not None


def test_video_frames_are_merged_per_item(tmp_path):
    policy = make_policy(tmp_path, "block", max_frames=4)
    monitor = monitor_for(policy, "wan21")
    x0 = torch.zeros(2, 16, 9, 4, 4)
    x0[1, 0, 8] = FLAG                        # only item 1's last frame is unsafe
    with pytest.raises(Blocked) as e:
        monitor.on_step(5, 20, x0)
    assert monitor.checker.batches == [8]     # 2 items x 4 frames
    assert e.value.verdict.details["items"] == 2


# -- failures fail closed ---------------------------------------------------------------------

def test_checker_failure_blocks(tmp_path):
    def broken(images, policy, stage):
        raise RuntimeError("onnxruntime exploded")

    monitor = monitor_for(make_policy(tmp_path), checker=broken)
    with pytest.raises(Blocked) as e:
        run(monitor, 20, latent(CLEAN))
    assert e.value.verdict.codes == (GUARD_UNAVAILABLE,) and "onnxruntime exploded" in str(e.value)


def test_checker_returning_too_few_verdicts_blocks(tmp_path):
    monitor = monitor_for(make_policy(tmp_path), checker=lambda images, policy, stage: [])
    with pytest.raises(Blocked, match="0 verdicts for 2 previews"):
        monitor.on_step(5, 20, latent(CLEAN, CLEAN))


@pytest.mark.parametrize("garbage", [None, {"action": "block"}])
def test_checker_returning_non_verdicts_blocks(tmp_path, garbage):
    monitor = monitor_for(make_policy(tmp_path), checker=lambda images, policy, stage: [garbage] * len(images))
    with pytest.raises(Blocked, match="not a Verdict") as e:   # not a raw error a host may log and ignore
        monitor.on_step(5, 20, latent(CLEAN, CLEAN))
    assert set(e.value.verdict.codes) == {GUARD_UNAVAILABLE}
    assert monitor.finish().action is Action.BLOCK


def test_decoder_failure_blocks(tmp_path):
    class Broken:
        name, upscale = "broken", 1

        def decode(self, x0):
            raise RuntimeError("CUDA out of memory")

    monitor = monitor_for(make_policy(tmp_path), decoder=Broken())
    with pytest.raises(Blocked, match="broken preview decoder could not run"):
        monitor.on_step(5, 20, latent(CLEAN))


@pytest.mark.parametrize("fault, message", [
    (lambda rgb: rgb[:1], "returned 1 images for 2 latents"),       # item 1 would go unjudged
    (lambda rgb: rgb[:0], "returned 0 images for 2 latents"),
    (lambda rgb: rgb * float("nan"), "NaN or infinite"),            # would become a black preview
])
def test_a_decoder_returning_the_wrong_count_or_nan_blocks(tmp_path, fault, message):
    class Faulty(BrightDecoder):
        def decode(self, x0):
            return fault(super().decode(x0))

    monitor = monitor_for(make_policy(tmp_path, "block"), decoder=Faulty())
    with pytest.raises(Blocked, match=message):
        monitor.on_step(19, 20, latent(CLEAN, 1.0))


def test_bad_arguments_are_clear_errors(tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    with pytest.raises(TypeError, match="step must be an integer"):
        monitor.on_step(2.5, 20, latent(CLEAN))
    with pytest.raises(TypeError, match="total must be an integer"):
        monitor.on_step(2, float("nan"), latent(CLEAN))
    with pytest.raises(TypeError, match="step must be an integer"):
        monitor.on_step(True, 20, latent(CLEAN))
    with pytest.raises(ValueError, match="real floats, got torch.int64"):
        monitor.on_step(2, 20, latent(CLEAN).long())
    assert monitor.on_step(torch.tensor(5), np.int64(20), latent(CLEAN)).checked  # numpy / 0-d tensor steps
    with pytest.raises(TypeError, match="family must be a name"):
        LoopMonitor(make_policy(tmp_path), None, decoder=BrightDecoder(), checker=FakeChecker())
    assert LoopMonitor(None, "sd15", decoder=BrightDecoder(), checker=FakeChecker()).policy.name == "public"


def test_non_finite_x0_blocks(tmp_path):
    x0 = latent(CLEAN)
    x0[0, 1, 2, 3] = float("nan")
    with pytest.raises(Blocked, match="NaN or infinite"):
        monitor_for(make_policy(tmp_path)).on_step(5, 20, x0)


def test_missing_required_taesd_refuses_to_start(tmp_path, monkeypatch):
    from sdguard.errors import GuardUnavailable

    monkeypatch.setenv("SDGUARD_CACHE", str(tmp_path / "cache"))
    for name in ("SDGUARD_TAESD_DIR", "SDGUARD_WEIGHTS_DIR", "SDGUARD_MODEL_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(GuardUnavailable, match="taesd_decoder"):
        LoopMonitor(make_policy(tmp_path, decoder='"taesd"'), "sd15", checker=FakeChecker())


# -- audit, lifecycle -------------------------------------------------------------------------

def test_block_is_audited_with_the_latent_hash(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    monitor = monitor_for(make_policy(tmp_path, "block"), audit=log)
    monitor.start({"host": "comfyui", "seed": 42})
    x0 = latent(FLAG)
    with pytest.raises(Blocked):
        run(monitor, 20, x0)
    monitor.finish()
    records = list(log.records())
    assert len(records) == 1 and log.verify().ok
    record = records[0]
    assert record["input_sha256"] == hash_input(x0.numpy().tobytes())
    assert record["host"] == "comfyui" and record["extra"]["run"]["seed"] == 42
    assert record["verdict"]["action"] == "block" and record["verdict"]["steps_saved"] == 14


def test_host_run_info_that_is_not_json_is_still_audited(tmp_path):
    from pathlib import Path

    log = AuditLog(tmp_path / "audit.jsonl")
    monitor = monitor_for(make_policy(tmp_path, "block"), audit=log)
    monitor.start({"seed": np.int64(7), "model": Path("/m/x.safetensors"), "cfg": float("nan")})
    with pytest.raises(Blocked):
        run(monitor, 20, latent(FLAG))
    record = list(log.records())[0]
    assert record["extra"]["run"] == {"seed": 7, "model": "/m/x.safetensors", "cfg": None} and log.verify().ok


def test_a_block_stands_when_its_audit_record_cannot_be_written(tmp_path, caplog):
    (tmp_path / "trail").mkdir()  # a folder where the trail file should be
    monitor = monitor_for(make_policy(tmp_path, "block"), audit=AuditLog(tmp_path / "trail"))
    with pytest.raises(Blocked):
        run(monitor, 20, latent(FLAG))
    assert "audit record of this block could not be written" in caplog.text


def test_finish_audits_the_worst_check_once(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    monitor = monitor_for(make_policy(tmp_path, "censor"), audit=log)
    monitor.start()
    run(monitor, 20, latent(FLAG))
    summary = monitor.finish()
    records = list(log.records())
    assert len(records) == 1 and records[0]["verdict"]["action"] == "censor"
    assert records[0]["verdict"]["step"] == 19   # latest among equally severe checks
    assert summary.to_dict()["checks"][0]["step"] == 5
    assert monitor.finish().checks == ()          # reset after finish


def test_clone_shares_configuration_not_state(tmp_path):
    monitor = monitor_for(make_policy(tmp_path, "block"))
    with pytest.raises(Blocked):
        run(monitor, 20, latent(FLAG))
    twin = monitor.clone()
    assert twin.decoder is monitor.decoder and twin.checker is monitor.checker
    assert twin.on_step(0, 20, latent(CLEAN)).checked is False
    with pytest.raises(Blocked):
        monitor.on_step(7, 20, latent(CLEAN))
    monitor.reset()
    assert monitor.on_step(7, 20, latent(CLEAN)).checked


def test_real_decoder_and_default_policy_shapes(tmp_path):
    """The default linear decoder and policy preview size, with the fake checker."""
    monitor = LoopMonitor(load_policy("public"), "sdxl", decoder=None, checker=FakeChecker())
    result = monitor.on_step(5, 20, torch.randn(1, 4, 16, 16))
    assert result.checked and monitor.decoder.name in ("linear", "taesd")


# -- CLI: sdguard preview-latent ----------------------------------------------------------------

def cli(*argv):
    from sdguard.cli import main

    return main(list(argv))


@pytest.fixture
def fake_image_guard(monkeypatch):
    """Replace the image guard's `check_images` (the preview check looks it up at call time).

    The CLI modules are imported first: `sdguard.cli.image` binds `check_images` at import, and a
    first import under the patch would keep the fake for every later test."""
    from sdguard.cli import build_parser

    import sdguard.image_guard

    build_parser()

    def install(fake):
        monkeypatch.setattr(sdguard.image_guard, "check_images", fake)

    return install


def test_cli_reads_comfyui_latent_in_raw_space(tmp_path, capsys, fake_image_guard):
    import json

    from safetensors.torch import save_file

    seen = []

    def fake_check_images(images, policy, stage, only):
        seen.append((len(images), images[0].shape, stage, only))
        return FakeChecker()(images, policy, stage)

    fake_image_guard(fake_check_images)
    torch.manual_seed(0)
    raw = (torch.randn(2, 4, 16, 16) - 2.0) * 5.5    # SaveLatent stores raw VAE latents; decodes dark
    save_file({"latent_tensor": raw, "latent_format_version_0": torch.tensor([])}, str(tmp_path / "a.latent"))
    status = cli("preview-latent", str(tmp_path / "a.latent"), "--family", "sd15", "--decoder", "linear",
                 "--json", "--out", str(tmp_path / "out"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and [r["item"] for r in lines] == [0, 1]
    # Linear previews keep latent resolution; the public profile's preview backends judge them.
    assert seen == [(2, (16, 16, 3), "preview", ("nudenet", "age"))]
    assert lines[0]["latent"]["space"] == "raw→internal" and abs(lines[0]["latent"]["std"] - 1.0) < 0.1
    assert lines[0]["hint"] is None and lines[0]["action"] == "allow"
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a_latent_tensor_0.png", "a_latent_tensor_1.png"]


def test_cli_blocked_preview_is_never_written(tmp_path, capsys, fake_image_guard):
    from safetensors.torch import save_file

    fake = FakeChecker()
    fake_image_guard(lambda images, policy, stage, only: fake(images, policy, stage))
    x0 = torch.zeros(2, 4, 8, 8)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 8.0 - 4.0
    x0[1] = 5.0 + checker                            # decodes bright (flagged); std 4 looks raw
    save_file({"x0": x0}, str(tmp_path / "x0.safetensors"))
    status = cli("preview-latent", str(tmp_path / "x0.safetensors"), "--family", "sd15", "--profile",
                 "classroom", "--decoder", "linear", "--out", str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert status == 3 and "x0[1] BLOCK" in out and "hint: std" in out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x0_x0_0.png"]


def test_cli_out_never_overwrites_nor_follows_links(tmp_path, capsys, fake_image_guard):
    from safetensors.torch import save_file

    fake_image_guard(lambda images, policy, stage, only: FakeChecker()(images, policy, stage))
    save_file({"x0": torch.zeros(1, 4, 8, 8)}, str(tmp_path / "x0.safetensors"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "x0_x0_0.png").write_bytes(b"an earlier run's preview")
    (tmp_path / "victim.txt").write_bytes(b"notes")
    (out / "x0_x0_0-1.png").symlink_to(tmp_path / "victim.txt")
    assert cli("preview-latent", str(tmp_path / "x0.safetensors"), "--family", "sd15", "--profile", "adult",
               "--decoder", "linear", "--out", str(out), "--json") == 0
    import json

    assert json.loads(capsys.readouterr().out)["preview"] == str(out / "x0_x0_0-2.png")
    assert (out / "x0_x0_0.png").read_bytes() == b"an earlier run's preview"
    assert (tmp_path / "victim.txt").read_bytes() == b"notes"
    assert (out / "x0_x0_0-2.png").read_bytes().startswith(b"\x89PNG")


def test_cli_bad_input_exits_2_with_nothing_on_stdout(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"x0": torch.zeros(1, 16, 8, 8)}, str(tmp_path / "x0.safetensors"))
    assert cli("preview-latent", str(tmp_path / "x0.safetensors"), "--family", "sd15") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "has 4 channels; got 16" in captured.err and "sd3, flux" in captured.err
    assert cli("preview-latent", str(tmp_path / "x0.safetensors"), "--family", "flux", "--key", "nope") == 2
    assert "no tensor 'nope'" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    assert cli("preview-latent", str(tmp_path / "bad.safetensors"), "--family", "flux") == 2
    assert "not a safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 4, 8, 8), np.float32), "empty tensor (shape [0, 4, 8, 8])"),     # a batch of none
    (np.zeros((1, 4, 0, 8), np.float32), "empty tensor (shape [1, 4, 0, 8])"),
    (np.zeros((1, 4, 8, 8), np.int64), "holds int64"),
    (np.zeros((1, 4, 8, 8), np.complex64), "holds complex64"),
    (np.array(["a", "b"]), "holds <U1"),
    pytest.param(np.zeros((1, 4, 8, 8), np.longdouble), f"holds {np.dtype(np.longdouble)}",   # torch has no such type
                 marks=pytest.mark.skipif(np.dtype(np.longdouble).itemsize == 8, reason="longdouble is float64 here")),
])
def test_cli_refuses_npy_arrays_that_are_not_latents(tmp_path, capsys, array, message):
    np.save(tmp_path / "x0.npy", array)
    assert cli("preview-latent", str(tmp_path / "x0.npy"), "--family", "sd15", "--decoder", "linear") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_cli_reads_a_big_endian_npy(tmp_path, capsys):
    np.save(tmp_path / "x0.npy", np.full((1, 4, 8, 8), 0.25, ">f4"))
    assert cli("preview-latent", str(tmp_path / "x0.npy"), "--family", "sd15", "--decoder", "linear",
               "--profile", "adult", "--json") in (0, 3)
    import json

    assert json.loads(capsys.readouterr().out)["latent"]["mean"] == 0.25


def test_cli_refuses_a_npy_header_promising_more_than_the_file_holds(tmp_path, capsys):
    np.save(tmp_path / "x0.npy", np.zeros((1, 4, 8, 8), np.float32))
    data = (tmp_path / "x0.npy").read_bytes()
    promise = b"(9999, 4, 9999, 9999), }"         # 3.6 TB: refused before any allocation
    huge = data.replace(b"(1, 4, 8, 8), }" + b" " * (len(promise) - 15), promise)
    assert len(huge) == len(data) and huge != data  # the header's padding absorbs the longer shape
    (tmp_path / "x0.npy").write_bytes(huge)
    assert cli("preview-latent", str(tmp_path / "x0.npy"), "--family", "sd15", "--decoder", "linear") == 2
    assert "not a .npy array" in capsys.readouterr().err


def test_cli_nan_latent_blocks_without_a_traceback(tmp_path, capsys, caplog):
    x0 = np.zeros((1, 4, 8, 8), np.float32)
    x0[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "x0.npy", x0)
    assert cli("preview-latent", str(tmp_path / "x0.npy"), "--family", "sd15", "--decoder", "linear") == 3
    assert "NaN or infinite" in capsys.readouterr().out
    assert "NaN or infinite" in caplog.text and "Traceback" not in caplog.text


# -- background mode --------------------------------------------------------------------------

class GatedChecker(FakeChecker):
    """Holds each classification until the test opens the gate; records the worker thread."""

    def __init__(self):
        super().__init__()
        import threading

        self.gate = threading.Event()
        self.threads: list[str] = []

    def __call__(self, images, policy, stage):
        import threading

        self.threads.append(threading.current_thread().name)
        assert self.gate.wait(10), "test never opened the gate"
        return super().__call__(images, policy, stage)


def test_background_block_fires_after_the_result_arrives(tmp_path):
    checker = GatedChecker()
    monitor = monitor_for(make_policy(tmp_path, "block", background=True), checker=checker)
    x0 = latent(FLAG)
    run(monitor, 20, x0, steps=range(5))
    started = monitor.on_step(5, 20, x0)
    assert started.checked and started.pending and started.verdicts == ()
    assert monitor.on_step(6, 20, x0).pending          # sampling goes on while the check runs
    checker.gate.set()
    monitor._state.inflight[0].future.result(timeout=10)
    with pytest.raises(Blocked) as e:
        monitor.on_step(7, 20, x0)
    details = e.value.verdict.details
    assert (details["step"], details["stopped_at"], details["steps_saved"]) == (5, 7, 12)
    assert checker.threads == ["sdguard-monitor_0"]
    assert monitor.summary().checks[0].applied_at == 7
    summary = monitor.finish()
    assert (summary.blocked_at, summary.steps_saved) == (7, 12)   # where it fired, not the step it read


def test_background_final_step_waits_for_every_check(tmp_path):
    checker = GatedChecker()
    checker.gate.set()
    monitor = monitor_for(make_policy(tmp_path, "censor", background=True), checker=checker)
    results = run(monitor, 20, latent(FLAG))
    final = results[-1]
    assert not final.pending and [v.action for v in final.verdicts] == [Action.CENSOR]
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 19]


def test_finish_raises_a_late_block(tmp_path):
    checker = GatedChecker()
    monitor = monitor_for(make_policy(tmp_path, "block", background=True), checker=checker)
    run(monitor, 20, latent(FLAG), steps=range(6))    # interrupted after step 5 (A1111 decodes it anyway)
    checker.gate.set()
    with pytest.raises(Blocked) as e:
        monitor.finish()
    assert e.value.verdict.details["step"] == 5 and e.value.verdict.details["steps_saved"] == 0


def test_bfloat16_latents_are_hashed_for_the_audit(tmp_path):
    from sdguard.preview_check import latent_bytes

    log = AuditLog(tmp_path / "audit.jsonl")
    monitor = monitor_for(make_policy(tmp_path, "block"), audit=log)
    x0 = latent(FLAG).to(torch.bfloat16)
    with pytest.raises(Blocked):
        monitor.on_step(5, 20, x0)
    assert list(log.records())[0]["input_sha256"] == hash_input(latent_bytes(x0))
    assert len(latent_bytes(x0)) == x0.numel() * 2
    assert latent_bytes(latent(FLAG)) == latent(FLAG).numpy().tobytes()


def test_start_loads_the_preview_detectors_of_the_default_checker(tmp_path, monkeypatch):
    import sdguard.image_guard

    loaded = []
    monkeypatch.setattr(sdguard.image_guard, "load_backends", lambda names: loaded.append(list(names)) or ({}, {}))
    policy = make_policy(tmp_path)
    LoopMonitor(policy, "sd15", decoder=BrightDecoder()).start()
    assert loaded == [list(policy.section("monitor")["backends"])]
    LoopMonitor(policy, "sd15", decoder=BrightDecoder(), checker=FakeChecker()).start()
    LoopMonitor(make_policy(tmp_path, enabled=False), "sd15", decoder=BrightDecoder()).start()
    assert len(loaded) == 1  # an injected checker loads its own; a disabled monitor needs none


def test_start_survives_a_detector_that_cannot_load(tmp_path, monkeypatch):
    from sdguard import image_backends
    from sdguard.errors import GuardUnavailable

    def fail(name):
        raise GuardUnavailable(f"image backend '{name}' is not installed")

    monkeypatch.setattr(image_backends, "get_backend", fail)
    monitor = LoopMonitor(make_policy(tmp_path, preview_action="block"), "sd15", decoder=BrightDecoder())
    monitor.start()
    with pytest.raises(Blocked) as caught:  # the check itself fails closed
        monitor.on_step(19, 20, latent(CLEAN))
    assert caught.value.verdict.reasons[0].code == GUARD_UNAVAILABLE
