"""What a run holds per row: planning keeps no per-row Python objects, only a few numbers."""

from __future__ import annotations

import tracemalloc

import pandas as pd

from llmframe.faces.frames import rows_of
from llmframe.faces import planning


def test_planning_a_large_frame_holds_bytes_per_row_not_objects(tmp_path):
    def plan(frame):
        return planning.plan(rows_of(frame), "Summarise row {i}: {text}", model="openai:m", api_key="k",
                             base_url="http://127.0.0.1:9/v1", cache_dir=str(tmp_path), progress=False)

    rows = 100_000
    frame = pd.DataFrame({"i": range(rows), "text": ["the quarterly report shows steady growth"] * rows})
    plan(frame.head(10))  # imports and the cache's first opening are not per-row costs
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run = plan(frame)
        held, peak = (n - before for n in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(run.keys) == rows
    # Rendered prompts (about 100 characters) would cost over 150 bytes a row, hex keys over 80:
    # a run keeps 16-byte digests and a few integers a row, and renders a bounded chunk at a time.
    assert held / rows < 80, f"{held / rows:.0f} bytes held per row"
    assert peak / rows < 200, f"{peak / rows:.0f} bytes per row at the peak of planning"
