"""model="transformers:<hub id or path>": batched generation with a Hugging Face model in this process."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria

from .. import constants
from ..errors import ConfigError
from ..plan.media import MediaRef
from ..plan.request import Embedded, Request, Response
from . import local_embed, media
from .replies import mean_probability
from .local import MAPPED_PARAMS, Batch, LocalProvider, check_model, loaded, option, raw_prompt



@dataclass
class _Loaded:
    """A model with its tokenizer, and the grammars compiled for it; one generate call at a time."""

    model: Any
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    grammars: dict[str, Any] = field(default_factory=dict)
    tokenizer_info: Any = None

    def grammar(self, schema: dict) -> Any:
        """The schema compiled to a token-level grammar (once per schema); no free whitespace, so weak models cannot wander."""
        import xgrammar

        text = json.dumps(schema)  # unsorted: the grammar makes the model write the fields in the schema's order
        if text not in self.grammars:
            if self.tokenizer_info is None:
                self.tokenizer_info = xgrammar.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.model.config.get_text_config().vocab_size)
            self.grammars[text] = xgrammar.GrammarCompiler(self.tokenizer_info).compile_json_schema(
                text, any_whitespace=False)
        return self.grammars[text]


class _Interrupted(StoppingCriteria):
    """Ends a generate call early once the run is cancelled: the batch is dropped, the model freed."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


class TransformersProvider(LocalProvider):
    """Left-padded batches sorted by prompt length; xgrammar constrains structured answers."""

    name = "transformers"
    extra = "transformers"
    load_options = ("device_map", "torch_dtype", "dtype", "model_kwargs", "tokenizer", "trust_remote_code")
    run_options = ("batch_size", "chat_template")
    media_kinds = frozenset({"image"})  # image-text-to-text models (a processor with a chat template)
    # Embeddings (df.llm.embed): the token states pooled (providers/local_embed.py); an input's limit is the
    # model's own, counted by its tokenizer when the pack is embedded.
    embedding_limits = (constants.LOCAL_EMBEDDING_PACK, 2**62)

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        opts = self.options
        self.batch_size = option(opts, "batch_size", int, constants.TRANSFORMERS_BATCH_SIZE)
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"provider_options['batch_size'] must be an integer >= 1, got {self.batch_size!r}")
        self.chat = option(opts, "chat_template", bool)  # None: use the tokenizer's template when it has one
        option(opts, "device_map", (str, dict))
        option(opts, "torch_dtype", (str, torch.dtype))
        option(opts, "dtype", (str, torch.dtype))
        option(opts, "model_kwargs", dict, {})
        option(opts, "tokenizer", str)
        option(opts, "trust_remote_code", bool)
        check_model(self.name, model, trust_remote_code=bool(opts.get("trust_remote_code")))

    # A cascade's confidence: the chosen tokens' log-probabilities, from generate()'s scores (_token_confidences).
    logprob_params = {"logprobs": True}

    @classmethod
    def check_params(cls, params: dict) -> None:
        unknown = sorted(set(params) - MAPPED_PARAMS - {"logprobs"} - set(transformers.GenerationConfig().to_dict()))
        if unknown:
            raise ConfigError(f"params {unknown} are not generation parameters of transformers' generate(); "
                              "see transformers.GenerationConfig for the ones it takes")

    @classmethod
    def embedding_model(cls, model: str, *, dimensions: int | None, endpoint: str | None) -> None:
        local_embed.check_dimensions(model, dimensions, {})

    async def embed(self, texts: list[str], params: dict) -> Embedded:
        """The pack's vectors from the model's token states, in a worker thread (the loop goes on)."""
        encoder = await asyncio.to_thread(loaded, (*self.loaded_key, "encoder"),
                                          lambda: local_embed.load(self.model, self.options))
        vectors, tokens = await asyncio.to_thread(local_embed.embed, encoder, texts,
                                                  truncate=bool(params.get("truncate")), batch_size=self.batch_size)
        return Embedded(vectors, tokens)

    @property
    def group_size(self) -> int:
        return self.batch_size * constants.LOCAL_SORT_BATCHES

    def _load(self) -> _Loaded:
        opts = self.options
        trust = bool(opts.get("trust_remote_code"))
        tokenizer = AutoTokenizer.from_pretrained(opts.get("tokenizer") or self.model, trust_remote_code=trust)
        tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        device_map = opts.get("device_map")
        model = AutoModelForCausalLM.from_pretrained(
            self.model,
            dtype=opts.get("dtype", opts.get("torch_dtype", "auto")),
            device_map=device_map,
            trust_remote_code=trust,
            **opts.get("model_kwargs", {}),
        )
        if device_map is None:
            model.to("cuda" if torch.cuda.is_available() else "cpu")
        model.eval()
        return _Loaded(model, tokenizer)

    def _load_vision(self) -> _Loaded:
        """An image-text-to-text model with its processor (in the tokenizer's place: it tokenizes and reads images)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        opts = self.options
        trust = bool(opts.get("trust_remote_code"))
        processor = AutoProcessor.from_pretrained(opts.get("tokenizer") or self.model, trust_remote_code=trust)
        processor.tokenizer.padding_side = "left"
        model = AutoModelForImageTextToText.from_pretrained(
            self.model, dtype=opts.get("dtype", opts.get("torch_dtype", "auto")), device_map=opts.get("device_map"),
            trust_remote_code=trust, **opts.get("model_kwargs", {}))
        if opts.get("device_map") is None:
            model.to("cuda" if torch.cuda.is_available() else "cpu")
        model.eval()
        return _Loaded(model, processor)

    def _run_vision(self, requests: list[Request], stop: threading.Event) -> Iterator[Batch]:
        """Requests with images: the processor's chat template and its image processor, a batch at a time."""
        entry = loaded((*self.loaded_key, "image-text-to-text"), self._load_vision)
        processor, model = entry.tokenizer, entry.model
        params = requests[0].params
        for start in range(0, len(requests), self.batch_size):
            if stop.is_set():
                return
            chunk = list(range(start, min(start + self.batch_size, len(requests))))
            try:
                prompts = [_vision_prompt(requests[i].messages) for i in chunk]
                texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                         for m, _ in prompts]
                images = [pictures for _, pictures in prompts]
                batch = processor(text=texts, images=images if any(images) else None, padding=True,
                                  return_tensors="pt").to(model.device)
                kwargs = _generation_kwargs(params, processor.tokenizer)
                with entry.lock, torch.inference_mode():
                    if "seed" in params:
                        torch.manual_seed(params["seed"])
                    out = model.generate(**batch, **kwargs, stopping_criteria=[_Interrupted(stop)],
                                         pad_token_id=processor.tokenizer.pad_token_id)
                new = out[:, batch["input_ids"].shape[1]:].tolist()
                ends = set(_eos_ids(model, processor.tokenizer))
                counts = batch["attention_mask"].sum(dim=1).tolist()  # image tokens included
                answers = [_answer(t, ends, processor.tokenizer, params.get("stop"), kwargs["max_new_tokens"], int(n))
                           for t, n in zip(new, counts)]
            except Exception as exc:  # this batch's rows fail; the others go on
                answers = [Response.failure(f"{type(exc).__name__}: {exc}")] * len(chunk)
            if stop.is_set():
                return
            yield list(zip(chunk, answers))

    def run_batches(self, requests: list[Request], stop: threading.Event) -> Iterator[Batch]:
        if any(media.has_media(r.messages) for r in requests):  # images: the model's processor reads them
            yield from self._run_vision(requests, stop)
            return
        entry = loaded(self.loaded_key, self._load)
        tokenizer = entry.tokenizer
        chat = self.chat if self.chat is not None else bool(tokenizer.chat_template)
        texts = [tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) if chat
                 else raw_prompt(r.messages) for r in requests]
        # Templates write their own special tokens; raw prompts get the tokenizer's (a BOS, usually).
        ids = tokenizer(texts, add_special_tokens=not chat)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
        params = requests[0].params  # one run, one set of parameters
        size, start = self.batch_size, 0
        while start < len(order) and not stop.is_set():
            chunk = order[start:start + size]
            try:
                answers = self._generate(entry, [ids[i] for i in chunk], params, stop)
            except torch.OutOfMemoryError:
                if size > 1:  # halve and try the same rows again, for the rest of the run too
                    size = self.batch_size = max(1, size // 2)
                    _free_memory()
                    warnings.warn(f"out of memory: batch size lowered to {size}", RuntimeWarning, stacklevel=1)
                    continue
                _free_memory()
                answers = [Response.failure("out of memory with a batch of one: use a shorter prompt, "
                                            "a smaller max_tokens or a smaller model")]
            except Exception as exc:  # this batch's rows fail; the others go on
                answers = [Response.failure(f"{type(exc).__name__}: {exc}")] * len(chunk)
            if stop.is_set():
                return  # generation was cut short: these answers are incomplete
            yield list(zip(chunk, answers))
            start += len(chunk)

    def _generate(self, entry: _Loaded, rows: list[list[int]], params: dict, stop: threading.Event) -> list[Response]:
        tokenizer, model = entry.tokenizer, entry.model
        batch = tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(model.device)
        kwargs = _generation_kwargs(params, tokenizer)
        if "json_schema" in params:
            import xgrammar.contrib.hf  # one processor per generate call: it keeps per-row matcher state

            kwargs["logits_processor"] = transformers.LogitsProcessorList(
                [xgrammar.contrib.hf.LogitsProcessor(entry.grammar(params["json_schema"]))])
        with entry.lock, torch.inference_mode():
            if "seed" in params:
                torch.manual_seed(params["seed"])
            out = model.generate(**batch, **kwargs, stopping_criteria=[_Interrupted(stop)],
                                 pad_token_id=tokenizer.pad_token_id)
            scores = None
            if params.get("logprobs"):  # each chosen token's log-probability, the scores renormalised
                scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
                out = out.sequences
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        ends = set(_eos_ids(model, tokenizer))
        budget = kwargs["max_new_tokens"]
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        answers = [_answer(tokens, ends, tokenizer, params.get("stop"), budget, int(n))
                   for tokens, n in zip(new, prompt_tokens)]
        if scores is not None:
            for answer, row in zip(answers, scores.float().tolist()):
                answer.confidence = mean_probability(row[: answer.output_tokens])
        return answers


def _vision_prompt(messages: list[dict]) -> tuple[list[dict], list]:
    """Messages in the processor's chat-template form ({"type": "image"} parts), and their images as PIL images."""
    from PIL import Image

    pictures, out = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts = []
        for part in content:
            if isinstance(part, MediaRef):
                data, _ = media.load_now(part)  # read (or fetched) and downscaled here, in the worker thread
                pictures.append(Image.open(io.BytesIO(data)).convert("RGB"))
                parts.append({"type": "image"})
            else:
                parts.append(part)
        out.append({"role": message["role"], "content": parts})
    return out, pictures


def _generation_kwargs(params: dict, tokenizer) -> dict:
    """Our generation parameters as generate() keywords; anything else in params= passes straight through."""
    kwargs: dict[str, Any] = {"max_new_tokens": params.get("max_tokens", constants.LOCAL_MAX_TOKENS)}
    temperature = params.get("temperature")
    if temperature == 0:
        kwargs["do_sample"] = False  # temperature 0 means greedy, as on the APIs
    elif temperature is not None:
        kwargs.update(do_sample=True, temperature=temperature)
    if "top_p" in params:
        kwargs["top_p"] = params["top_p"]
        kwargs.setdefault("do_sample", True)
    if "stop" in params:
        kwargs.update(stop_strings=params["stop"], tokenizer=tokenizer)
    kwargs.update({k: v for k, v in params.items() if k not in MAPPED_PARAMS and k != "logprobs"})
    if params.get("logprobs"):
        kwargs.update(output_scores=True, return_dict_in_generate=True)
    return kwargs


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return [t for t in (*eos, tokenizer.eos_token_id) if t is not None]


def _answer(tokens: list[int], ends: set[int], tokenizer, stops: list[str] | None, budget: int,
            prompt_tokens: int) -> Response:
    """One row's generated tokens as a Response: cut at its end, real token counts, why it finished."""
    pad = tokenizer.pad_token_id
    used = next((i + 1 for i, t in enumerate(tokens) if t in ends), None)  # the end token was generated: count it
    if used is None:  # a stop string ended it (the rest is padding), or the budget ran out
        used = next((i for i, t in enumerate(tokens) if t == pad), len(tokens))
    text = tokenizer.decode(tokens[:used], skip_special_tokens=True)
    finish = "length" if used >= budget and not (tokens and tokens[used - 1] in ends) else "stop"
    cuts = [text.index(s) for s in stops or () if s in text]
    if cuts:  # the APIs leave the stop string out
        text, finish = text[: min(cuts)], "stop"
    return Response(text=text, input_tokens=prompt_tokens, output_tokens=used, finish_reason=finish)


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
