"""model="vllm:<hub id or path>": vLLM's offline engine in this process, handed whole groups to batch continuously."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import vllm
from vllm.sampling_params import SamplingParams, StructuredOutputsParams

from .. import constants
from ..errors import ConfigError, ProviderError
from ..plan.media import MediaRef
from ..plan.request import Embedded, Request, Response
from . import media
from .replies import mean_probability
from .local import MAPPED_PARAMS, Batch, LocalProvider, check_model, loaded, option, raw_prompt

# vLLM 0.32's xgrammar backend ignores the per-request disable_any_whitespace; set engine-wide, it works.
_STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


@dataclass
class _Engine:
    """One vLLM engine; one call at a time (its scheduler batches inside the call)."""

    llm: Any
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Stop the engine's worker processes now (unload), instead of at interpreter exit."""
        shutdown = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if shutdown is not None and hasattr(shutdown, "shutdown"):
            shutdown.shutdown()


class VLLMProvider(LocalProvider):
    """LLM.chat for chat models, LLM.generate for raw prompts; SamplingParams from our parameters and params=."""

    name = "vllm"
    media_kinds = frozenset({"image"})  # vision-language models, through LLM.chat (their chat template); no PDFs
    extra = "vllm"
    load_options = ("llm_kwargs",)
    run_options = ("chat_template",)

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self.chat = option(self.options, "chat_template", bool)
        self.llm_kwargs = option(self.options, "llm_kwargs", dict, {})
        check_model(self.name, model, trust_remote_code=bool(self.llm_kwargs.get("trust_remote_code")))

    # Embeddings (df.llm.embed): LLM.embed on an engine of its own, started with runner="pooling"; an input's
    # limit is the engine's max_model_len, which vLLM checks.
    embedding_limits = (constants.LOCAL_EMBEDDING_PACK, 2**62)

    @classmethod
    def embedding_model(cls, model: str, *, dimensions: int | None, endpoint: str | None) -> None:
        """Any model vLLM can pool embeds; dimensions= is vLLM's own (Matryoshka models), which it checks."""

    @property
    def group_size(self) -> int:
        return constants.VLLM_GROUP_SIZE

    async def embed(self, texts: list[str], params: dict) -> Embedded:
        """LLM.embed of the pack, in a worker thread (the loop goes on)."""
        return await asyncio.to_thread(self._embed, texts, params)

    def _embed(self, texts: list[str], params: dict) -> Embedded:
        engine = loaded((*self.loaded_key, "pooling"), lambda: _Engine(vllm.LLM(
            model=self.model, runner="pooling", **self.llm_kwargs)))
        kwargs: dict[str, Any] = {}
        if "dimensions" in params:
            kwargs["pooling_params"] = vllm.PoolingParams(dimensions=params["dimensions"])
        if params.get("truncate"):
            longest = engine.llm.llm_engine.model_config.max_model_len
            kwargs["tokenization_kwargs"] = {"truncation": True, "max_length": longest}
        with engine.lock:
            try:
                outputs = engine.llm.embed(texts, use_tqdm=False, **kwargs)
            except _refused() as exc:  # one input too long refuses the whole call: the pack is split to find it
                raise ProviderError(f"{exc}; pass truncate=True to cut long inputs", 400, retryable=False) from None
        vectors = np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32)
        return Embedded(vectors, sum(len(o.prompt_token_ids or ()) for o in outputs))

    @classmethod
    def check_params(cls, params: dict) -> None:
        try:
            sampling_params(params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"vLLM cannot take these generation parameters: {exc}") from None

    # A cascade's confidence: the chosen tokens' log-probabilities (SamplingParams passes logprobs= through).
    logprob_params = {"logprobs": 0}

    def _load(self) -> _Engine:
        kwargs = {"structured_outputs_config": _STRUCTURED_OUTPUTS, **self.llm_kwargs}
        return _Engine(vllm.LLM(model=self.model, **kwargs))

    def run_batches(self, requests: list[Request], stop: threading.Event) -> Iterator[Batch]:
        engine = loaded(self.loaded_key, self._load)
        if stop.is_set():
            return
        sampling = sampling_params(requests[0].params)  # one run, one set of parameters
        chat = self.chat if self.chat is not None else bool(engine.llm.get_tokenizer().chat_template)
        if any(media.has_media(r.messages) for r in requests):  # images: read a few at a time, as PIL images
            yield from _with_images(engine, requests, sampling, chat, stop, self._call)
            return
        try:
            outputs = self._call(engine, requests, sampling, chat)
        except ValueError:  # vLLM refuses a whole call for one bad prompt (too long): find it, keep the others
            outputs = []
            for request in requests:
                try:
                    outputs += self._call(engine, [request], sampling, chat)
                except ValueError as exc:
                    outputs.append(exc)
        yield [(i, _response(out)) for i, out in enumerate(outputs)]

    @staticmethod
    def _call(engine: _Engine, requests: list[Request], sampling: SamplingParams, chat: bool) -> list:
        with engine.lock:
            if chat:
                return engine.llm.chat([r.messages for r in requests], sampling, use_tqdm=False,
                                       add_generation_prompt=True)
            return engine.llm.generate([raw_prompt(r.messages) for r in requests], sampling, use_tqdm=False)


def _with_images(engine: _Engine, requests: list[Request], sampling: SamplingParams, chat: bool,
                 stop: threading.Event, call) -> Iterator[Batch]:
    """Requests with images, VLLM_MEDIA_GROUP_SIZE at a time (their pictures are in memory only then): each
    image an image_pil part of LLM.chat; a row whose file cannot be read, or any row of a model without a chat
    template (vLLM places images through it), fails alone."""
    size = constants.VLLM_MEDIA_GROUP_SIZE
    for start in range(0, len(requests), size):
        if stop.is_set():
            return
        done: list[tuple[int, Response]] = []
        ready: list[tuple[int, Request]] = []
        for i, request in enumerate(requests[start:start + size], start):
            if not chat:
                done.append((i, Response.failure("images go to a model through its chat template, and this "
                                                 "model has none: pass provider_options={'chat_template': True} "
                                                 "for one that does")))
                continue
            try:
                ready.append((i, Request(request.key, pictures(request.messages), request.params)))
            except ProviderError as exc:
                done.append((i, Response.failure(str(exc))))
        if ready:
            try:
                outputs = call(engine, [r for _, r in ready], sampling, chat)
            except ValueError:  # one bad prompt refuses the call: each alone, the others kept
                outputs = []
                for _, request in ready:
                    try:
                        outputs += call(engine, [request], sampling, chat)
                    except ValueError as exc:
                        outputs.append(exc)
            done += [(i, _response(out)) for (i, _), out in zip(ready, outputs)]
        yield done


def pictures(messages: list[dict]) -> list[dict]:
    """The messages with each MediaRef as vLLM's image_pil part, its bytes read (and downscaled) now."""
    from PIL import Image

    def picture(ref: MediaRef) -> dict:
        data, _mime = media.load_now(ref)
        return {"type": "image_pil", "image_pil": Image.open(io.BytesIO(data)).convert("RGB")}

    return [m if isinstance(m.get("content"), str) or m.get("content") is None else
            {**m, "content": [picture(p) if isinstance(p, MediaRef) else p for p in m["content"]]} for m in messages]


def _refused() -> tuple[type[BaseException], ...]:
    """What vLLM raises for a call it refuses (an input over max_model_len): ValueError, or its own error class."""
    from vllm import exceptions

    return (ValueError, *(getattr(exceptions, n) for n in ("VLLMValidationError",) if hasattr(exceptions, n)))


def sampling_params(params: dict) -> SamplingParams:
    """Our generation parameters as SamplingParams; anything else in params= (min_p, repetition_penalty...) passes through."""
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k not in MAPPED_PARAMS}
    kwargs["max_tokens"] = params.get("max_tokens", constants.LOCAL_MAX_TOKENS)  # vLLM's own default is 16
    for name in ("temperature", "top_p", "seed", "stop"):
        if name in params:
            kwargs[name] = params[name]
    if "json_schema" in params:
        kwargs["structured_outputs"] = StructuredOutputsParams(json=params["json_schema"])
    return SamplingParams(**kwargs)


def _response(output: Any) -> Response:
    if isinstance(output, Exception):
        return Response.failure(f"{type(output).__name__}: {output}")
    completion = output.outputs[0]
    response = Response(text=completion.text, input_tokens=len(output.prompt_token_ids or ()),
                        output_tokens=len(completion.token_ids), finish_reason=completion.finish_reason)
    if completion.logprobs:  # SamplingParams(logprobs=0): each position's chosen token, a cascade's confidence
        response.confidence = mean_probability([position[token].logprob for position, token
                                                in zip(completion.logprobs, completion.token_ids)
                                                if token in position])
    return response
