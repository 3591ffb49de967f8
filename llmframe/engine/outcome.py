"""What an execution did, as the engine returns it: the plan it ran is never written to."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from .answers import Answers

if TYPE_CHECKING:
    from ..cost.budget import Budget


@dataclass(slots=True)
class Counters:
    """What the run did on the wire, for the report."""

    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 replies
    duplicates: int = 0  # answers another process stored first
    not_cached: int = 0  # answers whose write to the cache failed: returned, not stored (so no memo of them)
    invalid: int = 0  # answers that did not validate against the output schema
    failed_in_a_row: int = 0
    not_sent: int = 0  # requests left unsent because the budget was reached
    failed_to_connect: int = 0  # failed requests none of whose attempts reached a server (refused, say)
    packed_requests: int = 0  # rows_per_request: requests that carried several rows
    asked_alone: int = 0  # rows_per_request: rows asked again alone (their item missing, repeated or invalid)
    single_requests: int = 0  # rows_per_request: requests that carried one row (alone, or a pack of one)
    tool_calls: int = 0  # tools=: calls the models asked for and llmframe ran
    tool_errors: int = 0  # of which gave the model an error result (raised, timed out, unknown, bad arguments)

    def add(self, other: Counters) -> None:
        """Count other's work here too (a batch run's online retries)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Outcome:
    """One execution of a plan: every distinct request's answer, the counters, its wall time, its batch job."""

    answers: Answers
    counters: Counters
    seconds: float = 0.0  # wall time of the execution, for the report
    job_id: str | None = None  # the batch job, when the run went through the provider's batch API
    budget: Budget | None = None  # the max_cost budget it drew on (a sweep's runs share one), for the report
    # Set on a look at a run that has not ended (a background job's partial result): requests without an
    # answer are pending, not failed, and their error column says this.
    pending_note: str | None = None
    callback_errors: tuple[str, ...] = ()  # what run callbacks (on_row=, ...) raised; every answer is kept


@dataclass
class Live:
    """A run's answers and counters while it goes, for a caller that looks before it ends (a background job)."""

    answers: Answers | None = None
    counters: Counters | None = None
