"""LoopMonitor inside Stable Diffusion WebUI Forge's own sampler loops (its k_diffusion/sampling.py and
modules/sd_samplers_extra.py), fed the way a WebUI per-evaluation hook is fed.

A WebUI extension sees x0 in `on_cfg_after_cfg`: Forge's CFGDenoiser.forward builds
``AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)`` after every model
evaluation, and the sampler's callback (``Sampler.callback_state``) sets ``state.sampling_step =
d["i"]`` only after step i's evaluations (modules/sd_samplers_cfg_denoiser.py and
sd_samplers_common.py). So the hook reads 0, 0, 1, ..., 18 in a 20-step run, twice per step for
second-order samplers, and never 19: the last check must come from `finish`.

Runs only where Forge is: set SDGUARD_WEBUI_DIR to a Forge checkout (scipy, torchsde, torchdiffeq
and tqdm importable; a toy denoiser stands in for the model, so no weights are needed).
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

WEBUI_DIR = os.environ.get("SDGUARD_WEBUI_DIR")
pytestmark = pytest.mark.skipif(not WEBUI_DIR, reason="set SDGUARD_WEBUI_DIR to a Forge checkout")

STEPS = 20
SIGMA_MIN, SIGMA_MAX = 0.0292, 14.6146  # SD1.5's
# Forge's samplers_k_diffusion (modules/sd_samplers_kdiffusion.py): (k_diffusion function or
# "restart", discard_next_to_last_sigma, options). DPM fast and DPM adaptive take no sigmas: tested apart.
SAMPLERS = {"DPM++ 2M": ("sample_dpmpp_2m", False, {}), "DPM++ SDE": ("sample_dpmpp_sde", False, {}),
            "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", False, {}),
            "DPM++ 2M SDE Heun": ("sample_dpmpp_2m_sde", False, {"solver_type": "heun"}),
            "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", False, {}), "DPM++ 3M SDE": ("sample_dpmpp_3m_sde", True, {}),
            "Euler a": ("sample_euler_ancestral", False, {}), "Euler": ("sample_euler", False, {}),
            "LMS": ("sample_lms", False, {}), "Heun": ("sample_heun", False, {}), "DPM2": ("sample_dpm_2", True, {}),
            "DPM2 a": ("sample_dpm_2_ancestral", True, {}), "Restart": ("restart", False, {}),
            "HeunPP2": ("sample_heunpp2", False, {}), "IPNDM": ("sample_ipndm", False, {}),
            "IPNDM_V": ("sample_ipndm_v", False, {}), "DEIS": ("sample_deis", False, {})}


@pytest.fixture(scope="module")
def forge():
    # k_diffusion/utils.py imports torchvision for image helpers, and sampling.py imports Forge's
    # Flux predictor (which needs diffusers) for its *_RF samplers: neither is on the path of the
    # samplers tested here.
    stubs = {"torchvision.transforms.functional": {},
             "backend.modules.k_prediction": {"PredictionFlux": type("PredictionFlux", (), {})}}
    with host_checkout(WEBUI_DIR, stubs):
        yield (importlib.import_module("k_diffusion.sampling"), importlib.import_module("modules.sd_samplers_extra"))


class WebUIRun:
    """What a WebUI run hands an `on_cfg_after_cfg` hook: `state` as Forge's launch_sampling and
    callback_state keep it, and a CFG denoiser (``model(x, sigma, **extra_args) -> x0``) that reports
    each evaluation's x0 with the step the state holds. x0 is `value` in channel 0 (what the test
    checker reads) and depends on x elsewhere (so adaptive step sizes have something to adapt to)."""

    def __init__(self, monitor, steps: int, value: float):
        self.monitor, self.value = monitor, value
        self.state = types.SimpleNamespace(sampling_step=0, sampling_steps=steps)   # launch_sampling
        # the ancestral samplers ask whether the model predicts Flux-style; SD1.5's does not
        self.inner_model = types.SimpleNamespace(predictor=types.SimpleNamespace())
        self.evaluations: list[int] = []
        self.callbacks = 0

    def __call__(self, x, sigma, **extra_args):
        x0 = 0.5 * torch.tanh(x)
        x0[:, 0] = self.value
        self.evaluations.append(self.state.sampling_step)
        self.monitor.on_step(self.state.sampling_step, self.state.sampling_steps, x0)   # the hook
        return x0

    def callback_state(self, d):
        self.state.sampling_step = d["i"]
        self.callbacks += 1


def sample(forge, label: str, monitor, value: float, **options) -> WebUIRun:
    """Run Forge sampler `label` for STEPS steps as KDiffusionSampler.sample runs it (txt2img)."""
    sampling, extra = forge
    run = WebUIRun(monitor, STEPS, value)
    kwargs = {"extra_args": {}, "callback": run.callback_state, "disable": True, **options}
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX
    monitor.start({"host": "forge", "sampler": label})
    if label == "DPM fast":
        sampling.sample_dpm_fast(run, x, SIGMA_MIN, SIGMA_MAX, STEPS, **kwargs)
    elif label == "DPM adaptive":
        sampling.sample_dpm_adaptive(run, x, SIGMA_MIN, SIGMA_MAX, **kwargs)
    else:
        func, discard, sampler_options = SAMPLERS[label]
        # get_sigmas: one more step, then drop the next-to-last sigma
        sigmas = sampling.get_sigmas_karras(STEPS + discard, SIGMA_MIN, SIGMA_MAX)
        if discard:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        sampler = extra.restart_sampler if func == "restart" else getattr(sampling, func)
        sampler(run, x, sigmas, **sampler_options, **kwargs)
    return run


@pytest.mark.parametrize("label", SAMPLERS)
def test_every_scheduled_step_is_checked_once_and_the_last_at_finish(forge, tmp_path, label):
    monitor = monitor_for(make_policy(tmp_path))
    run = sample(forge, label, monitor, CLEAN)
    assert run.callbacks == STEPS and sorted(set(run.evaluations)) == list(range(STEPS - 1))
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 18]


@pytest.mark.parametrize("label", ["Heun", "DPM2", "DPM++ SDE", "Restart"])
def test_second_order_samplers_evaluate_steps_twice_and_each_step_is_judged_once(forge, tmp_path, label):
    monitor = monitor_for(make_policy(tmp_path))
    run = sample(forge, label, monitor, CLEAN)
    assert len(run.evaluations) > STEPS   # the premise: several evaluations read the same step
    assert len(monitor.checker.batches) == 3
    assert [c.step for c in monitor.finish().checks] == [5, 9, 13, 18]


@pytest.mark.parametrize("label", [*SAMPLERS, "DPM fast", "DPM adaptive"])
def test_a_block_stops_the_sampler_at_the_first_check(forge, tmp_path, label):
    monitor = monitor_for(make_policy(tmp_path, "block"))
    with pytest.raises(Blocked) as e:
        sample(forge, label, monitor, FLAG)
    assert e.value.verdict.details["step"] == 5


def test_dpm_fast_reports_fewer_steps_and_gets_its_final_check_at_finish(forge, tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    run = sample(forge, "DPM fast", monitor, CLEAN)
    # DPM-Solver calls back after a step's first evaluation, so its later ones read the new step
    assert run.callbacks == STEPS // 3 + 1 and max(run.evaluations) == run.callbacks - 1
    assert [c.step for c in monitor.finish().checks] == [5, run.callbacks - 1]


def test_dpm_adaptive_ends_early_and_its_last_step_is_checked_at_finish(forge, tmp_path):
    monitor = monitor_for(make_policy(tmp_path))
    run = sample(forge, "DPM adaptive", monitor, CLEAN)
    last = max(run.evaluations)
    assert last < STEPS - 1
    assert [c.step for c in monitor.finish().checks] == sorted({s for s in (5, 9, 13) if s < last} | {last})
