"""Embeddings from a local transformers model: its token states pooled into one vector per input.

Pooling is the model's own where it ships a sentence-transformers config (modules.json naming a Pooling
module, whose config says cls / mean / max / last token, and a Normalize module); otherwise the mean of the
token states under the attention mask, as sentence-transformers does for a bare model. Imports torch.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, ProviderError

_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max",
          "pooling_mode_lasttoken": "last"}


@dataclass(frozen=True)
class Pooling:
    """How token states become one vector: mode (cls, mean, max, last) and whether it is normalised."""

    mode: str = "mean"
    normalize: bool = False


def pooling_of(path: str) -> Pooling:
    """The sentence-transformers pooling a model folder declares; mean, not normalised, where it declares none."""
    modules = Path(path) / "modules.json"
    if not modules.is_file():
        return Pooling()
    try:
        listed = json.loads(modules.read_text())
        kinds = {m.get("type", "").rsplit(".", 1)[-1]: m.get("path", "") for m in listed}
        mode = "mean"
        if "Pooling" in kinds:
            config = json.loads((Path(path) / kinds["Pooling"] / "config.json").read_text())
            chosen = [name for key, name in _MODES.items() if config.get(key)]
            if len(chosen) != 1:
                raise ConfigError(f"{path}: the Pooling config asks for {chosen or 'no'} pooling; llmframe pools "
                                  "one way: one of cls, mean, max or last token")
            mode = chosen[0]
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read the sentence-transformers config in {path}: {exc}") from None
    return Pooling(mode, "Normalize" in kinds)


def pool(states: torch.Tensor, mask: torch.Tensor, how: Pooling) -> torch.Tensor:
    """(batch, tokens, hidden) states -> (batch, hidden) vectors, padding left out (right-padded batches)."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    if how.mode == "cls":
        out = states[:, 0]
    elif how.mode == "max":
        out = states.masked_fill(weights == 0, torch.finfo(states.dtype).min).amax(dim=1)
    elif how.mode == "last":
        last = mask.sum(dim=1) - 1
        out = states[torch.arange(states.shape[0], device=states.device), last]
    else:
        out = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    return torch.nn.functional.normalize(out, dim=-1) if how.normalize else out


@dataclass
class Encoder:
    """A loaded encoder: model, tokenizer, pooling, its longest input; one forward pass at a time."""

    model: Any
    tokenizer: Any
    pooling: Pooling
    longest: int
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(path: str, options: dict) -> Encoder:
    """The model as an encoder (AutoModel: its token states), on the GPU when there is one."""
    from transformers import AutoModel, AutoTokenizer

    trust = bool(options.get("trust_remote_code"))
    tokenizer = AutoTokenizer.from_pretrained(options.get("tokenizer") or path, trust_remote_code=trust)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(path, dtype=options.get("dtype", options.get("torch_dtype", "auto")),
                                      device_map=options.get("device_map"), trust_remote_code=trust,
                                      **options.get("model_kwargs", {}))
    if options.get("device_map") is None:
        model.to("cuda" if torch.cuda.is_available() else "cpu")
    model.eval()
    longest = min(getattr(model.config, "max_position_embeddings", None) or 512,
                  tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 10**6)
    return Encoder(model, tokenizer, pooling_of(path), int(longest))


def embed(encoder: Encoder, texts: list[str], *, truncate: bool, batch_size: int) -> tuple[np.ndarray, int]:
    """Vectors of texts (float32, in order) and their tokens; an input over the model's limit is refused
    (ProviderError 400: the pack is split until that row fails alone) unless truncate."""
    tokenizer = encoder.tokenizer
    ids = tokenizer(texts, truncation=truncate, max_length=encoder.longest if truncate else None)["input_ids"]
    too_long = [i for i, row in enumerate(ids) if len(row) > encoder.longest]
    if too_long:
        raise ProviderError(f"an input of {len(ids[too_long[0]])} tokens is over the model's {encoder.longest}: "
                            "shorten it, or pass truncate=True to cut it", 400, retryable=False)
    out: list[np.ndarray] = []
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt").to(encoder.model.device)
        with encoder.lock, torch.inference_mode():
            states = encoder.model(**batch).last_hidden_state
            out.append(pool(states, batch["attention_mask"], encoder.pooling).float().cpu().numpy())
    vectors = np.empty((len(texts), out[0].shape[1] if out else 0), dtype=np.float32)
    vectors[order] = np.concatenate(out) if out else vectors[:0]
    return vectors, sum(map(len, ids))


def check_dimensions(path: str, dimensions: int | None, options: dict) -> None:
    """ConfigError for dimensions= other than the model's own (a local model's vectors are its hidden size)."""
    if dimensions is None:
        return
    from transformers import AutoConfig

    size = getattr(AutoConfig.from_pretrained(path, trust_remote_code=bool(options.get("trust_remote_code"))),
                   "hidden_size", None)
    if size != dimensions:
        raise ConfigError(f"transformers:{path} gives vectors of {size} numbers (its hidden size): drop "
                          f"dimensions={dimensions}, or pass dimensions={size}")
