"""`llmframe run`: a Parquet file or dataset (or CSV / JSON Lines) in, Parquet out, streamed chunk by chunk.

Each chunk goes through df.llm.generate itself, so cache keys and answers are exactly a notebook's
on the same rows; with max_cost, every chunk reserves from and settles into one budget, the run's.
Input columns never leave Arrow: they are written back as they were read, with the new columns
appended. Memory holds a few chunks, however long the input.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import constants
from . import provenance
from ..cost.budget import Budget
from ..errors import BudgetExceeded, ConfigError, RunAborted
from ..engine.progress import Progress, shared, should_show
from ..collect.report import one_warning_for_all_runs, warn_if_mostly_failed
from ..cost.money import dollars
from .reader import PARQUET_SUFFIXES, Part, open_source, prefetched
from .writer import NewColumns, Partial, Writer, output_schema, refuse_index_clash


@dataclass
class Job:
    """One `llmframe run`: where from, where to, and the arguments of generate."""

    source: Path
    dest: Path
    template: Any
    model: str
    output: Any = constants.DEFAULT_OUTPUT
    output_source: str | None = None  # how the user named a schema ("pkg.mod:Class", "schema.json")
    errors: str = "column"
    options: dict = field(default_factory=dict)
    batch_rows: int = constants.STREAM_BATCH_ROWS
    overwrite: bool = False
    progress: bool | None = None  # None: a bar when stderr is a terminal
    quiet: bool = False


def check_destination(job: Job, parts: list[Part]) -> bool:
    """Refuse an output that would clobber the input or an existing file; True when the output is a directory."""
    source, dest = job.source.resolve(), job.dest.resolve()
    to_directory = job.source.is_dir() and dest.suffix not in PARQUET_SUFFIXES
    if dest == source:
        raise ConfigError(f"the output {job.dest} is the input: write to another path")
    if job.source.is_dir() and source in dest.parents:
        raise ConfigError(f"the output {job.dest} is inside the input directory {job.source}: write it elsewhere")
    if dest in source.parents:
        raise ConfigError(f"the input {job.source} is inside the output {job.dest}: write it elsewhere")
    if dest.exists() or dest.is_symlink():
        if not job.overwrite:
            raise ConfigError(f"the output {job.dest} exists: pass --overwrite to replace it")
        if dest.is_dir() != to_directory:
            raise ConfigError(f"the output {job.dest} is {'a directory' if dest.is_dir() else 'a file'}; "
                              f"this run writes {'a directory' if to_directory else 'a file'}: choose another path")
        if dest.is_dir():
            strays = [p for p in dest.rglob("*") if p.is_file() and p.suffix not in PARQUET_SUFFIXES]
            if strays:
                raise ConfigError(f"refusing to replace the directory {job.dest}: it holds files that are not "
                                  f"Parquet, e.g. {strays[0]}")
    if not to_directory and len(parts) > 1:
        first = parts[0].schema.remove_metadata()
        for part in parts[1:]:
            if not part.schema.remove_metadata().equals(first):
                raise ConfigError(f"{part.path} has other columns or types than {parts[0].path}, so they cannot "
                                  "go into one file: write to a directory instead (an output path without .parquet)")
    return to_directory


@dataclass
class Outcome:
    """What a run did: its merged report, and whether rows failed where the user asked to raise."""

    report: dict
    failed_raise: int = 0
    first_error: str | None = None


class _Run:
    """One run's checked input, its new columns' types and the reports of the chunks done so far."""

    def __init__(self, job: Job):
        from ..plan.template import Template

        self.job = job
        self.parts = parts = open_source(job.source)
        self.to_directory = check_destination(job, parts)
        schema = parts[0].schema
        self.generate = dict(model=job.model, output=job.output, errors=job.errors, **job.options)
        # Every argument checked, and the new columns typed, by generate itself on no rows: before any file exists.
        # Without a bar of its own: the run's one bar comes after (an empty one would be drawn first).
        check = {**self.generate, "progress": False}
        empty = generate_chunk(schema.empty_table(), list(schema.names), job.template, check)
        self.new = new = NewColumns(empty, schema)
        self.used = Template(job.template, schema.names, system=job.options.get("system")).columns
        self.out_schemas = {id(p): output_schema(schema, new) for p in parts}  # one file: the schemas are the same
        if self.to_directory:  # each file keeps its own columns: check the template and the new names against each
            for part in parts:
                if not part.schema.equals(schema):
                    refuse_index_clash(generate_chunk(part.schema.empty_table(), list(part.schema.names),
                                                      job.template, check), part.schema)
                    self.out_schemas[id(part)] = output_schema(part.schema, new)
        self.secrets = _secrets(job)
        cap = job.options.get("max_cost")  # checked above; one budget for the whole run, never a share per chunk
        self.budget = Budget(cap) if cap is not None else None
        self.reports: list[dict] = []
        self.part_reports: dict[int, list[dict]] = {}
        self.started = time.perf_counter()

    def finish(self, part: Part | None) -> dict:
        """The provenance of one output file of a directory (part), or of the whole output (None)."""
        job = self.job
        mine = self.part_reports.get(id(part), []) if part is not None else self.reports
        report = self.merged(mine)
        if part is None:
            report["seconds"] = round(time.perf_counter() - self.started, 3)
        return provenance.record(
            source=str(part.path if part is not None else job.source), template=job.template, model=job.model,
            output=job.output, output_source=job.output_source, errors=job.errors, options=job.options,
            columns=self.new.schema.names, report=report, secrets=self.secrets,
        )

    def merged(self, reports: list[dict]) -> dict:
        """The chunks' reports as one; the budget is the run's own, not a sum of the chunks' views of it."""
        report = provenance.merge_reports(reports) or {"rows": 0}
        if self.budget is not None:
            not_sent = sum((r.get("budget") or {}).get("rows_not_sent", 0) for r in reports)
            report["budget"] = {**self.budget.summary(), "rows_not_sent": not_sent}
        return report

    def stream(self, writer: Writer) -> Outcome:
        """Generate chunk by chunk; the writer gets each chunk's rows until one fails where the user asked to raise."""
        import pyarrow as pa

        job, generate, outcome = self.job, self.generate, Outcome({})
        chunks = ((part, table) for part in self.parts for table in part.tables(job.batch_rows))
        for part, table in prefetched(chunks):
            try:
                out = generate_chunk(table, self.used, job.template, generate, self.budget)
                report = out.attrs[constants.REPORT_ATTR]
            except BudgetExceeded as exc:  # the run's budget cannot fit this chunk's next request: the run stops
                if exc.report is not None and "rows" in exc.report:
                    self.reports.append(exc.report)
                    raise self.over_budget() from None
                # A batch job refused whole, before it was submitted: its message says why.
                raise BudgetExceeded(f"{exc} (the input's rows from row {self.rows_done():,} on)",
                                     self.merged(self.reports)) from None
            except RunAborted as exc:
                if exc.report is None:  # the breaker or a refused key: every later row would fail too
                    raise
                report = exc.report  # errors="raise": keep going, so the cache fills; no output at the end
                outcome.failed_raise += report["failed"]
                outcome.first_error = outcome.first_error or (report["errors"] or [None])[0]
            self.reports.append(report)
            self.part_reports.setdefault(id(part), []).append(report)
            if not outcome.failed_raise:
                columns = self.new.arrow(out)
                writer.write(part, pa.Table.from_arrays([*table.columns, *columns.columns],
                                                        schema=self.out_schemas[id(part)]))
        return outcome

    def rows_done(self) -> int:
        """Input rows of the chunks done so far."""
        return sum(r.get("rows", 0) for r in self.reports)

    def over_budget(self) -> BudgetExceeded:
        """The run's BudgetExceeded, with its merged report: what was sent, and where the cap stopped it."""
        report = self.merged(self.reports)
        budget = report["budget"]
        return BudgetExceeded(
            f"max_cost={budget['max_cost']} reached after {report['rows'] - budget['rows_not_sent']:,} rows of the "
            f"input (spent about ${budget['spent']:.4g}): the rest were not sent. Finished answers are cached; "
            "raise --max-cost and re-run to send the rest", report)


def run(job: Job) -> Outcome:
    """Stream the input through generate into the output; nothing is written until the input is checked."""
    from ..faces import pandas as accessor  # noqa: F401  (registers df.llm)

    checked = _Run(job)
    partial = Partial(job.dest, checked.to_directory)
    partial.open()
    writer = Writer(partial, checked.to_directory, checked.finish)
    parts = checked.parts
    total = sum(p.rows for p in parts) if all(p.rows is not None for p in parts) else None
    show = not job.quiet and should_show(job.progress)
    bar = Progress(total, show=show, description=job.model)  # type: ignore[arg-type]
    state = "done"  # the bar's final state: complete (perhaps with failed rows), interrupted or stopped
    try:
        with shared(bar), one_warning_for_all_runs():  # one warning for the whole input, below, not one per chunk
            outcome = checked.stream(writer)
        outcome.report = checked.merged(checked.reports)
        outcome.report["seconds"] = round(time.perf_counter() - checked.started, 3)
        if outcome.failed_raise:
            writer.abandon()
            partial.discard()
            return outcome
        writer.close()
        partial.commit()
        warn_if_mostly_failed(outcome.report)
        return outcome
    except BaseException as exc:
        state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
        writer.abandon()
        partial.discard()
        raise
    finally:
        bar.close(state)


def generate_chunk(table, used: list[str], template: Any, generate: dict, budget: Budget | None = None
                   ) -> pd.DataFrame:
    """df.llm.generate on a chunk, drawing on the run's budget if any: only the columns the template reads
    are converted to pandas."""
    from ..faces.pandas import generate_within

    frame = table.select(used).to_pandas() if used else pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    if budget is None:
        return frame.llm.generate(template, **generate)
    return generate_within(frame, template, generate, budget)


def _secrets(job: Job) -> list[str | None]:
    """The key values to scrub from provenance: the one given, and the provider's environment variables."""
    from ..providers import parse_model, provider_class

    env = provider_class(parse_model(job.model)[0]).key_env
    return [job.options.get("api_key"), *(os.environ.get(v) for v in env)]


def summary(job: Job, outcome: Outcome) -> str:
    """The one line printed when a run ends."""
    r = outcome.report
    counts = (f"{r.get('rows', 0):,} rows: {r.get('requests_sent', 0):,} sent, {r.get('cached', 0):,} cached, "
              f"{r.get('failed', 0):,} failed, {r.get('skipped', 0):,} skipped; "
              f"{r.get('input_tokens', 0) + r.get('output_tokens', 0):,} tokens; "
              + (f"{dollars(r['cost'])}; " if isinstance(r.get("cost"), (int, float)) else "")
              + f"{r.get('seconds', 0):.1f} s")
    if outcome.failed_raise:
        return (f"llmframe run: {outcome.failed_raise:,} rows failed with --errors raise (first error: "
                f"{outcome.first_error}); nothing written to {job.dest}. The answers that succeeded are cached: "
                f"a re-run sends only the failed rows ({counts})")
    return f"llmframe run: wrote {job.dest} ({counts})"


def print_summary(job: Job, outcome: Outcome) -> None:
    if not job.quiet or outcome.failed_raise:
        print(summary(job, outcome), file=sys.stderr, flush=True)
