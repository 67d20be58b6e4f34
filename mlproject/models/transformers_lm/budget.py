"""The time budget of a transformers training (`max_minutes`): after its first steps, how many
optimizer steps each epoch takes so that the whole training ends within the budget, with the
learning-rate schedule decaying over exactly those steps; and a stop at the budget should a step
later run slower than measured.

A slow machine trains fewer steps, properly decayed, instead of being cut off mid-schedule; the fit
is kept with the checkpoints, so a resumed training goes on with the same steps.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from mlproject.param_rules import ConfigError

PROBE_STEPS = 4  # timed after the first one, which pays for allocation (and compilation)
MARGIN = 0.1  # of the budget, for steps slower than the first ones (10% on gpt-from-scratch here)


@dataclass(frozen=True)
class Fit:
    steps_per_epoch: int
    step_seconds: float  # the median of the probe's steps
    epoch_end_seconds: float  # an epoch's validation and checkpoints, estimated


def cosine_factor(step: int, warmup: int, total: int) -> float:
    """The learning rate's factor at `step`: linear warm-up, then a cosine to zero at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def fitted_steps(seconds: float, spent: float, done: int, step: float, epoch_end: float, epochs: int) -> int:
    """Optimizer steps per epoch that end a training of `epochs` epochs within `seconds`, when `done`
    steps took `spent` seconds, a step takes `step` and each epoch's end `epoch_end`."""
    left = seconds * (1 - MARGIN) - spent - epochs * epoch_end
    return (done + max(0, int(left / step))) // epochs


class TimeBudget:
    """The budget of one training: off (0 seconds), being measured, or fitted."""

    def __init__(self, seconds: float, epochs: int, key: str, clock: Callable[[], float] | None = None):
        """Started now: loading the model and scoring a base model count as training time."""
        self.seconds, self.epochs, self.key = seconds, epochs, key
        self.clock = clock or time.perf_counter
        self.started = self.mark = self.clock()
        self.planned, self.fit, self.spent_before = 0, None, 0.0
        self.durations: list[float] = []
        self.spent_out = False

    def plan(self, steps_per_epoch: int, saved: dict | None) -> None:
        """The steps each epoch takes without a budget, and the fit a resumed training goes on with."""
        self.planned = steps_per_epoch
        if saved:
            saved = dict(saved)
            self.spent_before = saved.pop("spent_seconds")  # by the runs this one resumes
            self.fit = Fit(**saved)

    @property
    def steps_per_epoch(self) -> int:
        return self.fit.steps_per_epoch if self.fit else self.planned

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def warmup(self, planned_warmup: int) -> int:
        """The warm-up's share of the planned schedule, kept in the fitted one (a schedule cut to
        fewer steps than its warm-up would never decay)."""
        return min(self.total_steps, round(planned_warmup * self.total_steps / (self.planned * self.epochs)))

    def spent(self) -> float:
        return self.spent_before + self.clock() - self.started

    def step_done(self, done: int, epoch_end: Callable[[float], float]) -> bool:
        """Time a step of epoch 1 (all of it: the optimizer step, logging, progress); once the probe
        is timed, fit the steps (`epoch_end` estimates an epoch's end from a step's time). True when
        it fitted them now."""
        if not self.seconds or self.fit is not None:
            return False
        now = self.clock()
        self.durations.append(now - self.mark)
        self.mark = now
        if len(self.durations) < min(PROBE_STEPS + 1, self.planned):
            return False
        step = statistics.median(self.durations[1:] or self.durations)
        end = epoch_end(step)
        least = self.epochs * (step + end) / (1 - MARGIN)  # one step an epoch
        if self.seconds < least:
            raise ConfigError(
                f"{self.key} = {self.seconds / 60:g}: too short for one optimizer step per epoch here "
                f"(a step takes {step:.2f} s measured, an epoch's validation and checkpoints about "
                f"{end:.1f} s); expected at least {math.ceil(least / 6) / 10:g} minutes for "
                f"{self.epochs} epochs, or 0 for no budget"
            )
        steps = min(self.planned, fitted_steps(self.seconds, self.spent(), done, step, end, self.epochs))
        self.fit = Fit(max(steps, done, 1), step, end)  # more than fit: the stop at the budget ends them
        cut = f" instead of {self.planned}" if self.fit.steps_per_epoch < self.planned else ""
        print(
            f"train: {self.key} = {self.seconds / 60:g}: a step takes {step:.2f} s and an epoch's end about "
            f"{end:.1f} s here, so {self.epochs} epochs of {self.fit.steps_per_epoch} steps{cut}, "
            f"the learning rate decaying over {self.total_steps}",
            flush=True,
        )
        return True

    def out_of_time(self, epochs_left: int) -> bool:
        """Whether one more step, and the ends of the epochs left, would overrun the budget (a step
        slower than measured); then the training stops there, a finished training."""
        if not self.seconds or self.fit is None:
            return False
        self.spent_out = self.spent() + self.fit.step_seconds + epochs_left * self.fit.epoch_end_seconds > self.seconds
        return self.spent_out

    def state(self) -> dict | None:
        """What the checkpoint keeps, for a resumed training to go on with the same steps."""
        return {**asdict(self.fit), "spent_seconds": self.spent()} if self.fit else None
