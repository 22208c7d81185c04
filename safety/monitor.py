"""The in-loop monitor: classify the predicted image (x0) while the sampler runs, and stop or hide
an unsafe generation before it finishes.

Adapters call three methods (``start`` → ``on_step`` per step → ``finish``)::

    monitor = LoopMonitor(policy, "sdxl")           # once per MODEL / script; `clone()` per run
    monitor.start({"host": "comfyui"})
    for step in range(total):                       # the sampler callback
        x0 = denoised(step)                         # internal latent space, [B,C,h,w] or [B,C,T,h,w]
        result = monitor.on_step(step, total, x0)   # raises Blocked(verdict) on a block
        for i, censored in enumerate(result.previews):  # empty until some item is censored
            if censored is not None:
                previews[i] = censored              # replaces the host's own preview of item i
    summary = monitor.finish()                      # may raise Blocked too (see below)

A host that throws the run away instead (an error, an interrupt it will not decode) calls
``reset()``, not ``finish()``.

Checks run at the policy's fractions of the run (``[monitor] schedule``) and on the final step.
``on_step`` is idempotent per step: samplers that call the model several times per step
(Heun, DPM-2, SDE, restart) or hooks that fire per evaluation may repeat a step; the repeat
returns the same result without decoding again (in a 1-step run, if the pass ends there, its
x0 gets the final check, below: a second 1-step pass looks like a repeat). A step going back, a new `total`, or a
new latent shape, dtype or device starts a new pass (a second sampler, hires fix, a new batch).

Some samplers report a different number of steps than `total` (ComfyUI passes ``len(sigmas) - 1``
to every sampler): ``dpm_adaptive`` chooses its own steps and may report more, which count as
the last step; ``dpm_fast`` reports about a third as many, so the run ends before its last step.
When the last x0 a pass reported was not checked (it ended early, ran past `total`, or repeated
the step of a 1-step run), and ``check_final`` is on, that x0 is checked when the next pass starts or at
`finish`, which then raises `Blocked` on a block.

With ``[monitor] background = true`` the previews are decoded on the caller's thread (where x0
lives, e.g. the GPU) and classified on one worker thread while sampling goes on, so the CPU
classifier costs the GPU nothing; a block then fires at the first step after the result
arrives, and the final step waits for every outstanding check, so nothing reaches the VAE unjudged.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .audit import AuditLog, hash_input
from .errors import Blocked, PolicyError
from .latent_formats import LatentFormat, latent_format
from .policy import Policy, load_policy
from .preview_check import (STAGE, Checker, LatentCheck, censor_preview, decode_previews, judge_previews,
                            latent_bytes)
from .verdict import Action, Verdict, unavailable

if TYPE_CHECKING:
    import torch

    from .latent_preview import PreviewDecoder

logger = logging.getLogger("sdguard.monitor")


@dataclass(frozen=True)
class StepResult:
    """What `LoopMonitor.on_step` tells the host.

    Args:
        step (`int`), total (`int`): as passed in.
        checked (`bool`): a check started at this step (in background mode its verdicts come later).
        verdicts (`tuple[Verdict, ...]`): one per batch item, from the check whose result arrived
            during this call (this step's, unless in background mode), else empty.
        previews (`tuple[np.ndarray | None, ...]`): per batch item, a censored preview (RGB
            ``uint8``, at most ``preview_size`` px) to show *instead of* the host's own, or ``None`` where
            the host may show its own. Sticky: once an item was censored, every later step carries
            its latest censored preview. For video, the first previewed frame.
        pending (`bool`): a background check has not reported yet; a strict host hides previews.
    """

    step: int
    total: int
    checked: bool
    verdicts: tuple[Verdict, ...] = ()
    previews: tuple[Any, ...] = ()
    pending: bool = False

    @property
    def hidden(self) -> bool:
        """Some item's preview must not be shown uncensored."""
        return any(p is not None for p in self.previews)


@dataclass(frozen=True)
class CheckRecord:
    """One check: the step it read, the step its result arrived at, what it decided and cost."""

    step: int
    total_steps: int
    action: Action
    decode_ms: float
    classify_ms: float
    applied_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total_steps": self.total_steps, "action": self.action.value,
                "applied_at": self.applied_at, "decode_ms": round(self.decode_ms, 2),
                "classify_ms": round(self.classify_ms, 2)}


@dataclass(frozen=True)
class MonitorSummary:
    """What `LoopMonitor.finish` returns.

    Args:
        family (`str`), decoder (`str`): the latent format and preview decoder used.
        checks (`tuple[CheckRecord, ...]`): every check, in order.
        verdict (`Verdict`, *optional*): the blocking verdict, else the most severe check's
            (the latest among equals); ``None`` when nothing was checked.
        blocked_at (`int`, *optional*): the step a block fired at.
        steps_saved (`int`): sampler steps not run because of the block.
        passes (`int`): sampler passes seen (a second KSampler or hires fix adds one).
    """

    family: str
    decoder: str
    checks: tuple[CheckRecord, ...] = ()
    verdict: Verdict | None = None
    blocked_at: int | None = None
    steps_saved: int = 0
    passes: int = 0

    @property
    def action(self) -> Action:
        return self.verdict.action if self.verdict is not None else Action.ALLOW

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family, "decoder": self.decoder, "action": self.action.value,
            "blocked_at": self.blocked_at, "steps_saved": self.steps_saved, "passes": self.passes,
            "decode_ms": round(sum(c.decode_ms for c in self.checks), 2),
            "classify_ms": round(sum(c.classify_ms for c in self.checks), 2),
            "checks": [c.to_dict() for c in self.checks],
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
        }


def check_steps(total: int, schedule: Sequence[float], final: bool) -> tuple[int, ...]:
    """Step indices (0-based) to check in a run of `total` steps: the step at which each fraction
    of the run is done (0.3 of 20 → step 5, the sixth; 0 → the first), plus the last step when `final`.

    Example:
        >>> check_steps(20, [0.3, 0.5, 0.7], True)
        (5, 9, 13, 19)
    """
    steps = {min(total - 1, max(0, _ceil(f * total) - 1)) for f in schedule}
    if final:
        steps.add(total - 1)
    return tuple(sorted(steps))


@dataclass
class _Inflight:
    step: int
    total: int
    future: Future
    latent_hash: str


@dataclass
class _RunState:
    """Everything that one run accumulates; `reset()` replaces it whole."""

    run_info: Mapping[str, Any] = field(default_factory=dict)
    meta: tuple[Any, ...] | None = None
    unchecked_x0: Any = None  # the pass's latest x0 if no check read it: the final check's input
    total: int | None = None
    last_step: int | None = None
    last_result: StepResult | None = None
    pending: list[int] = field(default_factory=list)
    inflight: list[_Inflight] = field(default_factory=list)
    passes: int = 0
    checks: list[CheckRecord] = field(default_factory=list)
    worst: Verdict | None = None
    worst_hash: str = ""
    blocked: Verdict | None = None
    censored: dict[int, Any] = field(default_factory=dict)
    batch: int = 0


class LoopMonitor:
    """Watch x0 during sampling; raise `Blocked` or hand back censored previews.

    Args:
        policy (`Policy`, *optional*, defaults to the ``public`` profile): its ``[monitor]`` section sets the schedule, decoder and background
            mode; categories' ``stage_actions.preview`` (else ``action``) decide.
        family (`str` or `LatentFormat`): the model family (``"sd15"``, ``"sdxl"``, ``"sd3"``, ``"flux"``, ...).
        decoder (`PreviewDecoder`, *optional*): defaults to `make_decoder` with the policy's
            ``decoder`` choice; adapters pass one built with the host's folders or its VAE.
        checker (`Callable`, *optional*): ``checker(images, policy, stage="preview") -> list[Verdict]``;
            defaults to the image guard's `check_images` with the ``[monitor] backends``.
        audit (`AuditLog`, *optional*): receives the blocking verdict, or the run's verdict at `finish`.

    Raises:
        `GuardUnavailable`: the policy's decoder is ``"taesd"`` and it cannot load, or ``"auto"``
            and a TAESD file is there but does not load.
        `PolicyError`: a bad ``[monitor]`` schedule (``load_policy`` checks the backends list).
        `ValueError`: unknown family.
        `TypeError`: `family` is neither a name nor a `LatentFormat`.

    Example:
        >>> monitor = LoopMonitor(load_policy("classroom"), "sd15")       # doctest: +SKIP
        >>> monitor.on_step(5, 20, x0)                                    # doctest: +SKIP
        Traceback (most recent call last):
        sdguard.errors.Blocked: sdguard: preview block: sexual: nudenet 0.91 ≥ 0.50
    """

    def __init__(self, policy: Policy | None, family: str | LatentFormat, *, decoder: PreviewDecoder | None = None,
                 checker: Checker | None = None, audit: AuditLog | None = None):
        self.policy = policy = policy or load_policy()
        if not isinstance(family, (str, LatentFormat)):
            raise TypeError(f"family must be a name such as 'sd15' or a LatentFormat, got {type(family).__name__}")
        self.format = family if isinstance(family, LatentFormat) else latent_format(family)
        settings = policy.section("monitor")
        self.enabled = bool(settings["enabled"])
        self.schedule = tuple(float(f) for f in settings["schedule"])
        # The same range as the policy schema (_base.toml [ranges]); 0 is the first step, as 0.01 is.
        if any(not 0.0 <= f <= 1.0 for f in self.schedule):
            raise PolicyError(f"[monitor] schedule must hold fractions from 0 to 1, got {list(self.schedule)}",
                              path=policy.source)
        self.check_final = bool(settings["check_final"])
        self.background = bool(settings["background"])
        if decoder is None and self.enabled:
            from .latent_preview import make_decoder
            decoder = make_decoder(self.format, settings["decoder"])
        self.decoder = decoder
        self.checker = checker
        self.audit = audit
        self._executor: ThreadPoolExecutor | None = None
        self._state = _RunState()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, run_info: Mapping[str, Any] | None = None) -> None:
        """Begin a run. `run_info` (JSON-serialisable; e.g. ``host``, ``seed``, ``model``) goes to
        the audit record; ``run_info["host"]`` overrides the policy's ``[audit] host``.

        Also loads the default checker's detectors (once per process; loading includes one warm-up
        run), so that the first check of the first run does not spend that time inside the loop. A detector that
        fails to load is not an error here (it is retried at the next start): a check that needs a
        required one blocks with the reason, and every preview detector is required by default."""
        self.reset()
        self._state.run_info = dict(run_info or {})
        if self.enabled and self.checker is None:
            from .image_guard import load_backends
            load_backends(self.policy.section("monitor")["backends"])

    def on_step(self, step: int, total: int, x0: torch.Tensor) -> StepResult:
        """Report the sampler's x0 after step `step` (0-based) of `total`.

        Args:
            step (`int`), total (`int`): ComfyUI's callback passes both; A1111: ``state.sampling_step``
                and ``state.sampling_steps``.
            x0 (`torch.Tensor`): predicted clean latent in the host's internal space, ``[B, C, h, w]``
                or ``[B, C, T, h, w]``; not modified.

        Returns:
            `StepResult`: whether a check ran, its verdicts and the previews to show instead.

        Raises:
            `Blocked`: a check of this run blocked (this one, an earlier one, or a background
                check that just reported); carries the verdict.
            `ValueError`: `total` < 1, `step` < 0, or x0 not this family's shape or not floats. A
                step past the end counts as the last step (ComfyUI's ``dpm_adaptive`` reports more
                steps than `total`).
            `TypeError`: `step` or `total` is not an integer.
        """
        state = self._state
        if state.blocked is not None:
            raise Blocked(state.blocked)
        step, total = _index(step, "step"), _index(total, "total")
        if total < 1 or step < 0:
            raise ValueError(f"step {step} of {total}: need total >= 1 and step >= 0")
        past_end, step = step >= total, min(step, total - 1)
        if not self.enabled:
            return StepResult(step, total, False)
        self.format.check_shape(tuple(x0.shape))
        if x0.shape[0] == 0:
            raise ValueError("x0 is an empty batch")
        if not x0.is_floating_point():
            raise ValueError(f"x0 must hold real floats, got {x0.dtype}")
        meta = (tuple(x0.shape), x0.dtype, x0.device)
        if state.meta is not None and meta != state.meta:
            self._new_pass("latent shape, dtype or device changed")
        elif state.total is not None and total != state.total:
            self._new_pass(f"total steps changed {state.total} → {total}")
        elif state.last_step is not None and step < state.last_step:
            self._new_pass(f"step went back {state.last_step} → {step}")
        elif step == state.last_step and state.last_result is not None:
            # A later evaluation of a step (Heun, DPM-2, a per-evaluation hook) refines an image
            # already judged, so it is served the cached result. Its x0 is left for the final check
            # only where it may be a new image: past `total`, or a repeat in a 1-step run, which is
            # how a second 1-step Turbo/LCM pass looks.
            if past_end or total == 1:
                state.unchecked_x0 = x0
            return state.last_result
        if state.meta is None:
            state.meta, state.total, state.batch = meta, total, x0.shape[0]
            state.pending = list(check_steps(total, self.schedule, self.check_final))
            state.passes += 1
        state.last_step = step
        verdicts = self._collect(step, wait=False)
        due = bool(state.pending) and step >= state.pending[0]
        while state.pending and step >= state.pending[0]:
            state.pending.pop(0)  # a sparse caller may skip a scheduled step; check once, now
        state.unchecked_x0 = None if due else x0
        if due:
            verdicts = self._start_check(step, total, x0) or verdicts
        if step == total - 1:
            verdicts = self._collect(step, wait=True) or verdicts  # nothing reaches the VAE unjudged
        result = StepResult(step, total, due, verdicts, self._sticky(), bool(state.inflight))
        state.last_result = result
        return result

    def finish(self) -> MonitorSummary:
        """End the run: wait for outstanding checks; check the last x0 if no check read it (the
        run ended before its last step, e.g. ``dpm_fast`` or an interrupt A1111 still decodes, or
        ran past it); record the run's verdict in the audit trail (once; a block was recorded when
        it fired); return the summary and reset for the next run.

        Raises:
            `Blocked`: one of those checks blocks (a block `on_step` raised is not raised again);
                the monitor is reset all the same.
            `OSError`, `SdguardError`: the audit trail cannot be written; the monitor is reset all
                the same. (A block stands when its record cannot be written: `on_step` logs that
                error and raises `Blocked`, since stopping the run matters more than the record.)
        """
        state = self._state
        if state.blocked is None:
            try:
                self._end_pass()
            except Blocked:
                self.reset()
                raise
        summary = self.summary()
        try:
            if self.audit is not None and state.blocked is None and state.worst is not None:
                self._record(state.worst, state.worst_hash)
        finally:  # a trail that cannot be written must not leave this run's state behind
            self.reset()
        return summary

    def summary(self) -> MonitorSummary:
        """The run so far (`finish` returns the same and resets)."""
        state = self._state
        verdict = state.blocked or state.worst
        # Where the block fired (in background mode, later than the step its check read: details["step"]).
        blocked_at = int(state.blocked.details["stopped_at"]) if state.blocked is not None else None
        saved = int(state.blocked.details["steps_saved"]) if state.blocked is not None else 0
        return MonitorSummary(self.format.family, getattr(self.decoder, "name", "none"), tuple(state.checks),
                              verdict, blocked_at, saved, state.passes)

    def reset(self) -> None:
        """Forget the run (checks, cached step, censored previews, a block, background checks
        still running); keep the configuration."""
        for job in self._state.inflight:
            job.future.cancel()  # a queued check of a dropped run must not delay the next run's first
        self._state = _RunState()

    def clone(self) -> LoopMonitor:
        """A fresh monitor with the same policy, family, decoder, checker and audit trail (the
        decoder's weights are shared, not copied)."""
        twin = object.__new__(LoopMonitor)
        twin.__dict__.update(self.__dict__)
        twin._executor = None
        twin._state = _RunState()
        return twin

    # -- checks ---------------------------------------------------------------------------

    def _start_check(self, step: int, total: int, x0: torch.Tensor, *,
                     after_pass: bool = False) -> tuple[Verdict, ...]:
        latent_hash = hash_input(latent_bytes(x0)) if self.audit else ""
        decoded = decode_previews(x0, self.policy, self.decoder)
        if not self.background:
            return self._apply(step, total, step, judge_previews(decoded, self.policy, checker=self.checker),
                               latent_hash, after_pass=after_pass)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdguard-monitor")
        future = self._executor.submit(judge_previews, decoded, self.policy, checker=self.checker)
        self._state.inflight.append(_Inflight(step, total, future, latent_hash))
        return ()

    def _collect(self, current: int, *, wait: bool, after_pass: bool = False) -> tuple[Verdict, ...]:
        """Apply background results, oldest first (all of them when `wait`); may raise `Blocked`.
        `after_pass`: the sampler pass has ended, so a block saves no steps."""
        state = self._state
        verdicts: tuple[Verdict, ...] = ()
        while state.inflight and (wait or state.inflight[0].future.done()):
            job = state.inflight.pop(0)
            try:
                checked = job.future.result()
            except Exception as e:  # noqa: BLE001 - a check that died must block, never pass
                failed = unavailable(STAGE, self.policy, "the preview check", e)
                checked = LatentCheck((failed,) * state.batch, (), 0.0, 0.0)
            verdicts = self._apply(job.step, job.total, current, checked, job.latent_hash,
                                   after_pass=after_pass)
        return verdicts

    def _apply(self, step: int, total: int, current: int, checked: LatentCheck,
               latent_hash: str, *, after_pass: bool = False) -> tuple[Verdict, ...]:
        """Account for one finished check (read at `step`, applied at `current`); raise on a block."""
        state = self._state
        details = {"step": step, "total_steps": total, "fraction": round((step + 1) / total, 4),
                   "decoder": getattr(self.decoder, "name", "none")}
        verdicts = [replace(v, details={**v.details, **details, "item": i, "steps_saved": 0})
                    for i, v in enumerate(checked.verdicts)]
        combined = verdicts[0].merge(*verdicts[1:])
        fired = combined.action is Action.BLOCK
        saved = total - 1 - current if fired and not after_pass else 0
        combined = replace(combined, details={**details, "items": len(verdicts), "stopped_at": current,
                                              "steps_saved": saved})
        state.checks.append(CheckRecord(step, total, combined.action, checked.decode_ms, checked.classify_ms,
                                        current))
        if state.worst is None or combined.action >= state.worst.action:
            state.worst, state.worst_hash = combined, latent_hash
        if fired:
            state.blocked = combined
            logger.info("blocked at step %d of %d: %s", step, total, combined.message)
            if self.audit is not None:
                try:
                    self._record(combined, latent_hash)
                except Exception:  # noqa: BLE001 - the block stands even when its record cannot be written
                    logger.exception("the audit record of this block could not be written")
            raise Blocked(combined)
        for i, v in enumerate(verdicts):
            if v.action is Action.CENSOR and checked.previews:
                state.censored[i] = censor_preview(checked.previews[i][0], v, self.policy)
        return tuple(verdicts)

    def _sticky(self) -> tuple[Any, ...]:
        state = self._state
        if not state.censored:
            return ()
        return tuple(state.censored.get(i) for i in range(state.batch))

    def _new_pass(self, why: str) -> None:
        """A new sampler pass in the same run: the last pass's checks are applied first (may raise
        `Blocked`); then a new schedule. The run's verdicts, counts and censored previews stay (a
        hires-fix pass starts from the image just censored: its first steps show the same content)."""
        logger.debug("new sampler pass: %s", why)
        state = self._state
        self._end_pass()
        state.meta = state.total = state.last_step = state.last_result = None
        state.pending = []

    def _end_pass(self) -> None:
        """Apply every outstanding check; then, with ``check_final``, check the pass's last x0 if
        no check read it (it reads as the last step seen). May raise `Blocked`."""
        state = self._state
        current = state.last_step or 0
        self._collect(current, wait=True, after_pass=True)
        if self.check_final and state.unchecked_x0 is not None:
            x0, state.unchecked_x0 = state.unchecked_x0, None
            self._start_check(current, state.total, x0, after_pass=True)
            self._collect(current, wait=True, after_pass=True)

    def _record(self, verdict: Verdict, latent_hash: str) -> None:
        assert self.audit is not None
        state = self._state
        host = str(state.run_info.get("host") or self.policy.section("audit")["host"])
        extra = {"run": dict(state.run_info), "checks": [c.to_dict() for c in state.checks],
                 "family": self.format.family}
        self.audit.record(verdict, input_hash=latent_hash, host=host, extra=extra)


def _index(value: Any, name: str) -> int:
    """An integer step count (Python, numpy or a 0-d tensor); anything else is a clear TypeError."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{name} must be an integer, got {value!r}")


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (0.7 * 20 = 14.000000000000002 → 14)."""
    rounded = round(value)
    return rounded if abs(value - rounded) < 1e-9 else int(value) + (value > int(value))
