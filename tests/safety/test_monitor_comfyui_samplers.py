"""LoopMonitor inside ComfyUI's own sampler loops (comfy/k_diffusion/sampling.py), called the way
ComfyUI's KSAMPLER calls its callback: ``callback(x["i"], x["denoised"], x["x"], len(sigmas) - 1)``.

Runs only where ComfyUI is: set SDGUARD_COMFYUI_DIR to a ComfyUI checkout (scipy, torchsde, tqdm
and einops importable; a toy denoiser stands in for the model, so no weights are needed).
"""

from __future__ import annotations

import importlib
import os
import types

import pytest

torch = pytest.importorskip("torch")

from _host_checkout import host_checkout  # noqa: E402
from test_monitor import CLEAN, FLAG, monitor_for, make_policy  # noqa: E402

from sdguard import Blocked  # noqa: E402

COMFYUI_DIR = os.environ.get("SDGUARD_COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set SDGUARD_COMFYUI_DIR to a ComfyUI checkout")

STEPS = 20
LATE_FLAG = -1.0  # a ToyModel value: x0 turns unsafe only once sigma < LATE_SIGMA
LATE_SIGMA = 0.05
# The k-diffusion samplers of ComfyUI's KSampler list that a model with EPS sampling runs
# (the cfg_pp ones also rewrite model_options, which a toy denoiser does not read).
SAMPLERS = ("euler", "euler_ancestral", "heun", "heunpp2", "dpm_2", "dpm_2_ancestral", "lms",
            "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ipndm",
            "ipndm_v", "deis", "lcm", "res_multistep", "gradient_estimation", "er_sde", "seeds_2",
            "seeds_3", "sa_solver", "uni_pc", "uni_pc_bh2")


@pytest.fixture(scope="module")
def sampling():
    # comfy.model_patcher pulls in most of ComfyUI's requirements; only cfg_pp samplers use it
    with host_checkout(COMFYUI_DIR, {"comfy.model_patcher": {}}):
        yield importlib.import_module("comfy.k_diffusion.sampling")


class ToyModel:
    """Stands in for ComfyUI's KSamplerX0Inpaint: ``model(x, sigma) -> x0``, whose x0 is `value` in
    channel 0 (what the test checker reads) and depends on x elsewhere (so adaptive step sizes
    have something to adapt to), with the attributes the samplers read."""

    def __init__(self, value: float):
        import comfy.model_sampling

        # SD1.5's, built as comfy/model_base.py's model_sampling() builds it
        bases = (comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS)
        sampling = type("ModelSampling", bases, {})()
        self.value = value
        self.inner_model = types.SimpleNamespace(
            inner_model=types.SimpleNamespace(model_sampling=sampling),
            model_patcher=types.SimpleNamespace(get_model_object=lambda name: sampling))

    def __call__(self, x, sigma, **extra_args):
        x0 = 0.5 * torch.tanh(x)
        x0[:, 0] = self.value if self.value != LATE_FLAG else float(sigma.max() < LATE_SIGMA) * FLAG
        return x0


def sample(sampling, name: str, monitor, value: float, **options) -> int:
    """Run ComfyUI sampler `name` for STEPS steps with the monitor in its callback; returns the
    number of callbacks. Called as comfy/samplers.py's KSAMPLER.sample and ksampler() call them."""
    sigmas = sampling.get_sigmas_karras(STEPS, 0.0292, 14.6146)
    total = len(sigmas) - 1
    calls = []

    def callback(x):
        calls.append(x["i"])
        monitor.on_step(x["i"], total, x["denoised"])

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    model = ToyModel(value)
    kwargs = {"extra_args": {}, "callback": callback, "disable": True, **options}
    monitor.start({"host": "comfyui", "sampler": name})
    if name == "dpm_fast":
        sampling.sample_dpm_fast(model, x, sigmas[-2], sigmas[0], total, **kwargs)
    elif name == "dpm_adaptive":
        sampling.sample_dpm_adaptive(model, x, sigmas[-2], sigmas[0], **kwargs)
    elif name.startswith("uni_pc"):
        from comfy.extra_samplers import uni_pc

        getattr(uni_pc, name.replace("uni_pc", "sample_unipc"))(model, x, sigmas, **kwargs)
    else:
        getattr(sampling, f"sample_{name}")(model, x, sigmas, **kwargs)
    return len(calls)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_scheduled_step_is_checked_once(sampling, tmp_path, name):
    monitor = monitor_for(make_policy(tmp_path))
    assert sample(sampling, name, monitor, CLEAN) == STEPS
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 19]


@pytest.mark.parametrize("name", SAMPLERS + ("dpm_fast", "dpm_adaptive"))
def test_a_block_stops_the_sampler_at_the_first_check(sampling, tmp_path, name):
    monitor = monitor_for(make_policy(tmp_path, "block"))
    with pytest.raises(Blocked) as e:
        sample(sampling, name, monitor, FLAG)
    assert e.value.verdict.details["step"] == 5


def test_dpm_fast_reports_fewer_steps_and_gets_its_final_check_at_finish(sampling, tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    calls = sample(sampling, "dpm_fast", monitor, CLEAN)
    assert calls == STEPS // 3 + 1
    assert [c.step for c in monitor.finish().checks] == [5, calls - 1]


def test_dpm_adaptive_with_default_tolerances_ends_early_and_is_checked_at_finish(sampling, tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    calls = sample(sampling, "dpm_adaptive", monitor, CLEAN)
    assert calls < STEPS
    expected = sorted({s for s in (5, 9, 13) if s < calls} | {calls - 1})
    assert [c.step for c in monitor.finish().checks] == expected


def test_dpm_adaptive_with_tight_tolerances_runs_past_total_and_its_last_x0_is_checked(sampling, tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    # rtol/atol as a user sets them on ComfyUI's SamplerDPMAdaptative node
    assert sample(sampling, "dpm_adaptive", monitor, CLEAN, rtol=1e-4, atol=1e-5) > STEPS
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 19, 19]   # the last read as step 19
    late = monitor_for(make_policy(tmp_path, "block"))
    sample(sampling, "dpm_adaptive", late, LATE_FLAG, rtol=1e-4, atol=1e-5)   # unsafe only at the end
    with pytest.raises(Blocked):
        late.finish()
