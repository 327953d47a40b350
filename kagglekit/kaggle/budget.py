"""A wall-clock budget for a kernel: what is left, what a step costs, when the work will end.

    budget = Budget(total=9 * 3600, reserve=20 * 60)   # Kaggle's limit, time kept for writing
    for i, image in enumerate(images):
        if budget.will_overrun(i, len(images)):
            tta_views = 1                                # drop work before the limit
        with budget.step("tile inference"):
            ...

All times are seconds of a monotonic clock (``time.monotonic`` unless another is given).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import contextmanager
from numbers import Real

from kagglekit.errors import InvalidArgumentError

__all__ = ["Budget"]


class Budget:
    """``total`` seconds of wall clock, of which ``reserve`` are kept back (for the submission).

    ``started_at``: clock value at which the budget began (default: now; pass an earlier value of
    the same clock if the kernel started before the budget was made). ``remaining`` and
    ``can_afford`` count against ``total - reserve``.
    """

    def __init__(self, total: float, reserve: float = 0.0, *, started_at: float | None = None, clock=time.monotonic):
        if not isinstance(total, Real) or not 0 < total < math.inf:
            raise InvalidArgumentError(f"total must be a positive number of seconds, got {total!r}")
        if not isinstance(reserve, Real) or not 0 <= reserve < total:
            raise InvalidArgumentError(f"reserve must be in [0, total={total}) seconds, got {reserve!r}")
        self.total = float(total)
        self.reserve = float(reserve)
        self._clock = clock
        self.started_at = clock() if started_at is None else float(started_at)
        self.steps: dict[str, list[float]] = defaultdict(list)
        self._origins: dict[str, tuple[float, float]] = {}

    @property
    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self._clock() - self.started_at

    @property
    def remaining(self) -> float:
        """Seconds left before the reserve is reached (negative once it is)."""
        return self.total - self.reserve - self.elapsed

    def can_afford(self, seconds: float) -> bool:
        """True if ``seconds`` more work still ends before the reserve."""
        return seconds <= self.remaining

    @contextmanager
    def step(self, name: str):
        """Time the enclosed block and add its duration to ``steps[name]`` (also when it raises)."""
        start = self._clock()
        try:
            yield self
        finally:
            self.steps[name].append(self._clock() - start)

    def mean_step(self, name: str) -> float:
        """Mean duration of the step ``name`` (nan if it never ran)."""
        durations = self.steps.get(name)
        return sum(durations) / len(durations) if durations else math.nan

    def projected_finish(self, done: float, total: float, key: str = "work") -> float:
        """Projected elapsed seconds (since the budget started) at which ``total`` units are done.

        The rate is measured from the first call with this ``key`` (which records ``done`` and the
        time) to now, so call it once before the loop with ``done=0``. nan until a rate is known
        (no time or no unit has passed since the first call).
        """
        if not 0 <= done <= total:
            raise InvalidArgumentError(f"need 0 <= done <= total, got done={done!r}, total={total!r}")
        now = self._clock()
        t0, done0 = self._origins.setdefault(key, (now, done))
        if done <= done0 or now <= t0:
            return math.nan
        rate = (done - done0) / (now - t0)
        return now - self.started_at + (total - done) / rate

    def will_overrun(self, done: float, total: float, key: str = "work") -> bool:
        """True if, at the measured rate, finishing ``total`` units would eat into the reserve."""
        finish = self.projected_finish(done, total, key)
        return not math.isnan(finish) and finish > self.total - self.reserve

    def summary(self) -> str:
        """One line per step: name, count, total and mean seconds; then elapsed and remaining."""
        lines = [f"{name}: {len(d)} x {sum(d) / len(d):.2f} s = {sum(d):.1f} s" for name, d in self.steps.items()]
        lines.append(f"elapsed {self.elapsed:.1f} s, remaining {self.remaining:.1f} s (reserve {self.reserve:.0f} s)")
        return "\n".join(lines)
