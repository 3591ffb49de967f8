"""How every face plans a run: model= resolved through the provider registry, then the pure plan."""

from __future__ import annotations

from typing import Any

from ..plan import build
from ..plan.rows import Rows
from ..plan.template import TemplateLike
from ..providers import Provider, resolve


def plan(rows: Rows, template: TemplateLike, *, model: str | Provider, **options: Any) -> build.Plan:
    """The plan of a run over a face's rows: generate's options, model= included (llmframe.options' table)."""
    return build.plan(rows, template, target=resolve(model), **options)
