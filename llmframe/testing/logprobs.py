"""Token log-probabilities in the simulator's chat completions, where a request asks for them (logprobs=true).

The answer's tokens (4 characters each, as the simulator counts them) each get the log of one probability:
Simulator.confidence(body, text) when a test sets it, else a deterministic one drawn from the prompt and the
answer (mostly sure, sometimes not), so the mean of their exponent is what a cascade reads as the answer's
confidence.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

from .answers import last_user_text


def default_confidence(body: dict, text: str) -> float:
    """A probability from 0.3 to 1.0, the same for the same prompt and answer: 4 in 5 above 0.85."""
    draw = int(hashlib.sha256(f"{last_user_text(body)}\0{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return 0.85 + 0.15 * (draw / 0.8) if draw < 0.8 else 0.3 + 0.5 * (draw - 0.8) / 0.2


def attach(reply: dict, raw: dict, body: dict, text: str,
           confidence: Callable[[dict, str], float] | None) -> dict:
    """The reply with choices[0].logprobs filled in, if the request asked for them (OpenAI's shape)."""
    if raw.get("logprobs") is not True or not isinstance(reply.get("choices"), list) or not reply["choices"]:
        return reply
    p = min(1.0, max(1e-6, float((confidence or default_confidence)(body, text))))
    pieces = [text[i:i + 4] for i in range(0, len(text), 4)] or [""]
    tokens = [{"token": piece, "logprob": math.log(p), "bytes": list(piece.encode()), "top_logprobs": []}
              for piece in pieces]
    reply["choices"][0]["logprobs"] = {"content": tokens, "refusal": None}
    return reply
