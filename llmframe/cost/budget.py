"""The max_cost guard: a spending cap shared by every run it covers (one generate, or a whole sweep)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..errors import ConfigError
from .prices import Pricer


@dataclass
class Budget:
    """Real cost of finished requests plus the estimate of those in flight, never above max_cost.

    Used only on the engine's loop, so it needs no lock; a sweep's runs share one.
    """

    max_cost: float
    spent: float = 0.0  # USD of requests answered
    reserved: float = 0.0  # USD estimated for requests dispatched and not yet answered
    in_flight: int = 0
    stopped: bool = False  # once a request cannot fit, no later one is sent: a run stops, it does not trickle
    _settled: asyncio.Event | None = field(default=None, repr=False)

    def _fits(self, estimate: float) -> bool:
        return self.spent + self.reserved + estimate <= self.max_cost

    def fits(self, estimate: float) -> bool:
        """True when a request of this estimate would be dispatched now, without waiting."""
        return not self.stopped and self._fits(estimate)

    async def acquire(self, estimate: float) -> bool:
        """Dispatch a request estimated at `estimate` USD if the cap allows it; False (and stop) if it never can.

        While requests are in flight, their real cost may come in below their estimate: wait for them
        before deciding, so the cap is used, not just the first guesses.
        """
        while not self.stopped and not self._fits(estimate):
            if self.in_flight == 0:
                self.stopped = True
                break
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()
        if self.stopped:
            return False
        self.reserved += estimate
        self.in_flight += 1
        return True

    def settle(self, estimate: float, actual: float | None) -> None:
        """A dispatched request finished: its estimate is released, its real cost counted."""
        self.in_flight -= 1
        self.reserved = max(0.0, self.reserved - estimate) if self.in_flight else 0.0
        self.spent += estimate if actual is None else actual
        if self._settled is not None:
            self._settled.set()  # wake every waiting feeder to look again
            self._settled = None

    def spend(self, actual: float) -> None:
        """Count what was paid without a reservation: a batch job, checked whole before it was submitted."""
        self.spent += actual

    def left(self) -> float:
        """USD that may still be reserved."""
        return self.max_cost - self.spent - self.reserved

    def summary(self) -> dict:
        """For the run report."""
        return {"max_cost": self.max_cost, "spent": round(self.spent, 8), "stopped": self.stopped}


def check_max_cost(max_cost: float | None, pricer: Pricer | None) -> float | None:
    """max_cost (a number > 0, as the options table checks it) as it is; ConfigError if the model has no price."""
    if max_cost is None:
        return None
    if not pricer.known:
        raise ConfigError(f"max_cost needs a price for {pricer.model!r}, and none is known: pass "
                          f'prices={{{pricer.model!r}: {{"input_mtok": ..., "output_mtok": ...}}}} '
                          "(USD per million tokens)")
    return max_cost
