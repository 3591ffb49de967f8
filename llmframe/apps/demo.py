"""The offline demo: the simulator, a small frame, two runs (the second all from cache)."""

from __future__ import annotations

import json
import tempfile

import pandas as pd

REVIEWS = [
    "Arrived quickly and works perfectly.",
    "Broke after two days; the seller never answered.",
    "Decent for the price, but the manual is useless.",
    "Arrived quickly and works perfectly.",  # a duplicate: sent once, answered twice
    "Five stars, would buy again.",
    "The colour is nothing like the photos.",
]


def main() -> int:
    """Run the demo and print what happened; needs no API key and no network."""
    try:
        from ..testing import Simulator, tutorial_answer
    except ImportError as exc:
        raise SystemExit(f"the demo needs the simulator's server ({exc.name}): pip install 'llmframe[testing]'")
    frame = pd.DataFrame({"review": REVIEWS})
    with Simulator(latency=0.05, answer=tutorial_answer) as sim, tempfile.TemporaryDirectory(prefix="llmframe-demo-") as cache_dir:
        print(f"Simulator listening at {sim.base_url} (an offline stand-in for an OpenAI-compatible API)\n")
        for attempt in ("first run", "second run"):
            out = frame.llm.generate(
                "Sentiment of this review, one word:\n{review}",
                model="openai:gpt-4o-mini",
                output="sentiment",
                base_url=sim.base_url,
                api_key=sim.api_key,
                cache_dir=cache_dir,
                progress=False,
            )
            report = out.attrs["llmframe"]
            print(f"{attempt}: {report['rows']} rows, {report['requests_sent']} requests sent, "
                  f"{report['cached']} from cache, {report['deduplicated']} de-duplicated, "
                  f"{report['seconds']:.2f} s")
        print()
        print(out.to_string())
        print("\nrun report (out.attrs['llmframe']):")
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
