"""The cost meter: the one object the engine asks about money. It prices answers, reserves a request's
estimate against max_cost before it is sent and settles it once answered; one run has its own budget,
a sweep's runs draw on one budget together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BudgetExceeded
from ..plan.request import Request, Response
from .budget import Budget
from .estimate import estimate, output_limit, provider_kind, request_cost
from .prices import Pricer

if TYPE_CHECKING:
    from ..engine.answers import Answers
    from ..plan.build import Plan
    from ..stores.base import BaseStore as Store


class CostMeter:
    """One run's prices and its share of a max_cost budget; used only on the engine's loop."""

    __slots__ = ("pricer", "budget", "_known", "_estimate", "_holding", "_settled")

    def __init__(self, pricer: Pricer | None, budget: Budget | None = None, *, most_output: int = 0, tools=None,
                 writes: bool = False):
        """writes: the run may write the provider's prompt cache (reservations price its input as a write)."""
        self.pricer = pricer
        self.budget = budget
        self._known = pricer is not None and pricer.known
        self._estimate = request_cost(pricer, most_output, tools, writes=writes) if budget is not None else None
        self._holding: dict[int, float] = {}  # request -> its reservation, released however the run ends
        self._settled = 0.0  # USD settled into the budget by this meter (a batch run's online retries)

    @classmethod
    def for_plan(cls, plan: Plan, budget: Budget | None = None) -> CostMeter:
        """A run's meter: over budget when given (a sweep's, shared), else over the plan's own max_cost, if any."""
        if budget is None and plan.max_cost is not None:
            budget = Budget(plan.max_cost)
        outputs = budget is not None and plan.embedding is None  # an embedding has no output tokens
        limit = output_limit(provider_kind(plan.provider), plan.params.get("max_tokens"),
                             plan.params.get("reasoning_effort")) if outputs else 0
        return cls(plan.pricer, budget, most_output=limit, tools=plan.policy.tools, writes=plan.prompt_cache)

    @property
    def capped(self) -> bool:
        """True under max_cost: every request is reserved before it is sent."""
        return self.budget is not None

    @property
    def stopped(self) -> bool:
        """True once the budget has refused a request: nothing more is sent."""
        return self.budget is not None and self.budget.stopped

    @property
    def max_cost(self) -> float | None:
        return self.budget.max_cost if self.budget is not None else None

    def price(self, response: Response) -> float | None:
        """USD of one answer (every billed attempt's tokens) at today's price; None where the price is unknown."""
        if not self._known:
            return None
        return self.pricer.cost(response.input_tokens, response.output_tokens, response.cached_input_tokens,
                                response.cache_write_tokens)

    def saved(self, response: Response) -> float | None:
        """USD the provider's prompt cache took off one answer (its cache writes' premium netted); None where
        unpriced or the prompt cache served and wrote nothing."""
        if not self._known or not (response.cached_input_tokens or response.cache_write_tokens):
            return None
        full = self.pricer.cost(response.input_tokens, response.output_tokens)
        return None if full is None else full - (self.price(response) or 0.0)

    async def reserve(self, j: int, request: Request) -> bool:
        """Hold request j's estimate against the budget before it is sent; False when it must not be sent."""
        estimate_ = self._estimate(request)
        if not await self.budget.acquire(estimate_):
            return False
        self._holding[j] = estimate_
        return True

    def settle(self, j: int, response: Response) -> float | None:
        """Request j ended: its cost (None if unpriced or billed nothing), which replaces its reservation."""
        failed = response.error is not None
        billed = not failed or response.input_tokens or response.output_tokens  # a failure's rejected answers
        cost = self.price(response) if billed else None
        if self._holding:
            held = self._holding.pop(j, None)
            if held is not None:
                self.budget.settle(held, 0.0 if failed and cost is None else cost)
                self._settled += cost or 0.0
        return cost

    def settle_pack(self, positions: list[int], tokens: list[int]) -> float | None:
        """settle() for an embedding pack's answered rows (input tokens only): their cost, None if unpriced."""
        if not self._known and not self._holding:
            return None
        costs = [self.settle(j, Response(input_tokens=t)) for j, t in zip(positions, tokens)]
        known = [c for c in costs if c is not None]
        return sum(known) if known else None

    def fits(self, request: Request) -> bool:
        """True when reserve(request) would not wait (nor refuse): the budget has room for it now."""
        return self.budget is None or self.budget.fits(self._estimate(request))

    def release(self) -> None:
        """The run is over: reservations still held (it was cut short) count at their estimate."""
        for held in self._holding.values():
            self.budget.settle(held, None)
        self._holding.clear()

    def check_batch(self, plan: Plan, store: Store | None) -> None:
        """A batch job is paid whole once submitted: one whose estimate could exceed what is left of max_cost
        (all of it, unless the budget is shared: a sweep's, or `llmframe run`'s chunks) is not submitted."""
        if plan.batch is None or self.budget is None:
            return
        guess = estimate(plan, store, mode="batch")
        left = self.budget.left()
        if guess.cost is not None and guess.cost[1] > left:
            spent = f" (${self.budget.spent:.4g} of it spent)" if self.budget.spent else ""
            raise BudgetExceeded(
                f"the batch job would cost up to ${guess.cost[1]:.4g} (estimate ${guess.cost[0]:.4g} to "
                f"${guess.cost[1]:.4g} for {guess.uncached_requests} requests), over what is left of "
                f"max_cost={self.budget.max_cost}{spent}; nothing was submitted. Raise max_cost, set max_tokens for "
                "a firmer bound, or run fewer rows",
                {"model": plan.model, "mode": "batch", "estimate": guess.to_dict(), "budget": self.budget.summary()},
            )

    def settle_batch(self, answers: Answers) -> None:
        """A batch run's answers are in: what they were billed counts as spent (its online retries already do)."""
        if self.budget is None or not self._known:
            return
        costs = self.pricer.costs(answers.input_tokens, answers.output_tokens, answers.cached_input_tokens,
                                  answers.cache_write_tokens)
        self.budget.spend(max(0.0, float(costs[~answers.cached].sum()) - self._settled))
