"""How every face plans a run: model= resolved through the provider registry, then the pure plan."""

from __future__ import annotations

from typing import Any

from ..plan import build
from ..plan.rows import Rows
from ..plan.template import TemplateLike
from ..providers import Provider, resolve


def plan(rows: Rows, template: TemplateLike, *, model: str | Provider, memo: bool = False,
         **options: Any) -> build.Plan:
    """The plan of a run over a face's rows: generate's options, model= included (llmframe.options' table).

    memo: answer what the run memo holds of the call from it, planning only the other rows (generate's runs).
    """
    if memo:
        from ..memo import calls as run_memo

        return run_memo.plan(rows, template, target=resolve(model), **options)
    return build.plan(rows, template, target=resolve(model), **options)


def why_not_cached(rows: Rows, template: TemplateLike, *, model: str | Provider, **options: Any) -> list[str] | None:
    """What differs from the last run of this call in this cache (llmframe.memo); None where the memo has no say."""
    from ..memo import calls as run_memo

    return run_memo.why_not_cached(rows, template, target=resolve(model), **options)
