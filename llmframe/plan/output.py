"""The output spec: where a run's answers go (a text column, or a schema's fields), then the usage and error columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import constants
from ..errors import ConfigError, SchemaError
from .structured import OutputSchema, from_output


@dataclass(frozen=True)
class Output:
    """Where answers go: one text column, or a schema's fields (or one object column); then the error column."""

    text: str | None  # the text column's name; None for structured outputs
    schema: OutputSchema | None
    prefix: str
    mode: str  # "columns" or "object", for structured outputs
    errors: str  # "column" or "raise"
    usage: bool = False  # per-row usage columns (tokens, cost, cached, latency, finish reason)

    @classmethod
    def resolve(cls, output: Any, *, prefix: str, mode: str, errors: str, frame_columns: Sequence,
                usage: bool = False, index_names: Sequence = ()) -> Output:
        """Check output=, and that no new column clashes with the frame's columns or index levels.

        output= is checked here rather than in the options table: what it may be named depends on the frame.
        errors=, output_mode= and prefix= come checked by the table.
        """
        if isinstance(output, str) and not output:
            raise ConfigError("output must be a non-empty column name")
        resolved = cls(output if isinstance(output, str) else None, from_output(output), prefix, mode, errors, usage)
        resolved._refuse_repeats()
        names = resolved.names
        error = SchemaError if resolved.schema else ConfigError
        clash = [n for n in names if n in frame_columns]
        if clash:
            fix = "pass prefix=..., or drop them first" if resolved.schema else "pass another output= name, or drop it first"
            raise error(f"the frame already has column(s) {clash}: {fix}")
        # Parquet keeps pandas' index as columns of these names: a new column named so would be lost there.
        levels = set(index_names) - {None}
        clash = [n for n in names if n in levels]
        if clash:
            fix = "pass prefix=..." if resolved.schema else "pass another output= name"
            raise error(f"the frame's index already has level(s) named {clash}: {fix}, or rename the index first")
        return resolved

    def _refuse_repeats(self) -> None:
        """Fields named like the error or usage columns (which prefix= renames too): say what does help."""
        names = self.names
        if len(set(names)) == len(names):
            return
        own = [n for n in names if names.count(n) > 1]
        fixes = ["rename the field", "rename the schema (its class name or JSON Schema title names those columns)"]
        if self.error_column in own:
            fixes.append('pass errors="raise" (no error column)')
        if any(n in self.usage_columns for n in own):
            fixes.append("leave usage off")
        raise SchemaError(f"the schema's fields give column(s) {sorted(set(own))} that llmframe adds itself "
                          f"(prefix= renames both): {', or '.join(fixes)}")

    @property
    def base(self) -> str:
        """The stem of the error and usage columns' names."""
        return self.text if self.schema is None else f"{self.prefix}{self.schema.base}"

    @property
    def error_column(self) -> str | None:
        """Where per-row errors go (None with errors="raise")."""
        if self.errors != "column":
            return None
        return f"{self.base}{constants.ERROR_SUFFIX}"

    @property
    def usage_columns(self) -> list[str]:
        """The usage columns' names (none unless usage=True)."""
        return [f"{self.base}_{suffix}" for suffix in constants.USAGE_SUFFIXES] if self.usage else []

    @property
    def names(self) -> list[str]:
        """Every new column, in order."""
        if self.schema is None:
            values = [self.text]
        elif self.mode == "object":
            values = [f"{self.prefix}{self.schema.base}"]
        else:
            values = [f"{self.prefix}{f}" for f in self.schema.fields]
        return values + self.usage_columns + ([self.error_column] if self.error_column else [])
