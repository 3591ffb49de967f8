"""Planning an embedding run: generate's planning steps (render, key, de-duplicate, options, prices), plus the
embedding's own settings, model checks and refusals; pure, like every plan.

An embedding request is keyed as a generate request whose parameters are {"embedding": settings}: the key
holds provider, model, endpoint, dimensions, task type, truncation and the input, and never meets a chat key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import constants
from ..errors import ConfigError
from . import build
from .request import Keys, canonical_json, content_digests, integer_at_least, key_prefix
from .media import Media
from .rows import Rows
from .target import Target
from .template import TemplateLike

EMPTY_INPUT = "the input is empty: an embedding needs some text"
MEDIA_REFUSED = ("images and documents embed with a multimodal model, of llmframe's providers Gemini's "
                 "(model='gemini:gemini-embedding-2'); OpenAI's and compatible servers' embeddings, "
                 "gemini-embedding-001, text-embedding-004 and local transformers or vLLM encoders take text. Or "
                 "describe the media first and embed the description: df.llm.generate(['Describe the picture', "
                 "llmframe.image('photo')], output='caption'), then df.llm.embed('{caption}')")


@dataclass(frozen=True)
class Embedding:
    """An embedding run's own settings: what every request asks, and how many rows one request carries."""

    settings: dict  # dimensions, task_type, truncate: as the providers receive them (request.params["embedding"])
    max_inputs: int  # inputs per request
    max_tokens: int  # estimated tokens per request (the provider's cap, with a margin for the estimate)


def _settings(dimensions: Any, task_type: Any, truncate: Any) -> dict:
    """The embedding settings that were set, checked; the key holds exactly these."""
    out: dict[str, Any] = {}
    if dimensions is not None:
        out["dimensions"] = integer_at_least("dimensions", dimensions, 1)
    if task_type is not None:
        if not isinstance(task_type, str) or not task_type:
            raise ConfigError(f"task_type must be a non-empty string such as 'RETRIEVAL_DOCUMENT', got {task_type!r}")
        out["task_type"] = task_type
    if not isinstance(truncate, bool):
        raise ConfigError(f"truncate must be True or False, got {truncate!r}")
    if truncate:
        out["truncate"] = True  # absent when False: the keys of the default stay short
    return out


def embed_plan(frame: Rows, template: TemplateLike, *, target: Target,
               output: str = constants.DEFAULT_EMBEDDING_OUTPUT, dimensions: int | None = None,
               task_type: str | None = None, truncate: bool = False, batch_size: int | None = None,
               **common: Any) -> build.Plan:
    """Validate every argument, render and key every row of an embedding run; raise before anything is sent.

    target: model= resolved by the face, as for build.plan. common: the options embed shares with generate
    (cache, rate limits, retries, prices, max_cost...) and the face's positional_column / output_frame_columns.
    """
    if not isinstance(output, str) or not output:
        raise ConfigError(f"output must be the name of the vector column, got {output!r}")
    settings = _settings(dimensions, task_type, truncate)
    kind = target.kind
    if _has_media(template) and not kind.embeds_media(target.model):
        raise ConfigError(f"{target.name} embeds text only: {MEDIA_REFUSED}")
    endpoint = target.endpoint(common.get("base_url"))
    kind.embedding_model(target.model, dimensions=settings.get("dimensions"), endpoint=endpoint)
    limits = kind.embedding_limits
    assert limits is not None  # embedding_model refuses a provider without them
    inputs = limits[0] if batch_size is None else min(integer_at_least("batch_size", batch_size, 1), limits[0])
    mode = common.get("mode", constants.BATCH_MODES[0])
    if mode != constants.BATCH_MODES[0] and not kind.batch_embeddings:  # "auto" falls back to online
        if mode == "batch":
            raise ConfigError(f"the {kind.name} provider has no batch API for embeddings: use mode='online'")
        common = {**common, "mode": constants.BATCH_MODES[0]}
    # An input over the model's limit is that row's error, before sending; truncate=True lets it through, cut.
    longest = None if truncate else kind.embedding_input_tokens
    planned = build.plan(frame, template, target=target, output=output, params={constants.EMBEDDING_KEY: settings},
                         max_prompt_tokens=longest, **common)
    planned = _without_empty(planned, target.provider, target.model, endpoint)
    if len(planned.prompts) and not len(planned.keys):
        reasons = sorted(set(planned.prompts.skipped.values()))[:3]
        raise ConfigError(f"every row was refused before sending ({'; '.join(reasons)}): nothing to embed; check "
                          "the template and its columns")
    embedding = Embedding(settings, inputs, int(limits[1] * constants.EMBEDDING_PACK_SHARE))
    return dataclasses.replace(planned, embedding=embedding)


def _has_media(template: TemplateLike) -> bool:
    """True when the template holds a media part (llmframe.image, llmframe.document), alone or in a message."""
    if not isinstance(template, (list, tuple)):
        return False
    contents = [part.get("content") if isinstance(part, dict) else part for part in template]
    return any(isinstance(c, Media) or (isinstance(c, (list, tuple)) and any(isinstance(x, Media) for x in c))
               for c in contents)


def _without_empty(plan: build.Plan, provider: str, model: str, endpoint: str | None) -> build.Plan:
    """The plan with rows whose input is empty skipped (every embedding API refuses one).

    All empty inputs share one content key, found among the keys by its digest: no row is rendered again.
    """
    head = key_prefix(provider, model, plan.params, None, endpoint)
    roles = plan.prompts.roles or ("user",)
    empty_json = canonical_json([{"role": role, "content": ""} for role in roles])
    empty = np.frombuffer(next(iter(content_digests(head, [empty_json]))), dtype=np.uint64)
    found = np.flatnonzero((plan.keys.digests == empty).all(axis=1))
    if not len(found):
        return plan
    e = int(found[0])
    rows = np.flatnonzero(plan.row_to_key == e)
    for i in rows.tolist():
        plan.prompts.skip(i, EMPTY_INPUT)
    codes = plan.row_to_key.copy()
    codes[rows] = -1
    codes[codes > e] -= 1
    return dataclasses.replace(plan, keys=Keys(np.delete(plan.keys.digests, e, axis=0)), row_to_key=codes,
                               first_row=np.delete(plan.first_row, e), weights=np.delete(plan.weights, e))
