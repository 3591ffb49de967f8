"""Execute notebooks in place and save their outputs, for the committed copies that GitHub renders.

    python notebooks/execute.py                      # every notebook in this folder
    python notebooks/execute.py notebooks/01_quickstart.ipynb

Outputs are kept as Jupyter produced them, with the widgets' final state in the notebook's metadata
(JupyterLab and nbviewer draw the bars from it). Two clean-ups keep the files readable: a progress
widget's plain-text fallback (what GitHub shows) is its final state rather than the 0% it started
at, and per-cell execution timestamps are dropped so re-running changes only what really changed.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def final_text(state: dict, model_id: str) -> str | None:
    """A tqdm widget's final state as one line of text: description, percentage, counts; None if not a bar."""
    box = state.get(model_id, {}).get("state", {})
    children = [state.get(ref.removeprefix("IPY_MODEL_"), {}) for ref in box.get("children", [])]
    names = [child.get("model_name") for child in children]
    if names != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, _, right = (child["state"] for child in children)
    return html.unescape(f"{left.get('value', '')}|{right.get('value', '')}").replace("\u2007", " ")


class Client(NotebookClient):
    """nbclient, applying a widget's updates whichever cell sent them, as JupyterLab does (by comm id).

    A background job's bar is updated from llmframe's thread under the cell that started it, while later
    cells run; nbclient alone reads only the running cell's messages and would save that bar half way.
    """

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        while True:
            msg = await self.kc.iopub_channel.get_msg(timeout=None)
            if msg["parent_header"].get("msg_id") == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return
            elif msg["msg_type"] == "comm_msg":
                self.handle_comm_msg([], msg, cell_index)


def execute(path: Path) -> None:
    """Run every cell (in the notebook's folder), then save with final-state text fallbacks."""
    nb = nbformat.read(path, as_version=4)
    Client(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            text = final_text(state, view["model_id"]) if view else None
            if text is not None:
                output["data"]["text/plain"] = text
    nbformat.write(nb, path)
    print(f"executed {path}")


def main(argv: list[str]) -> int:
    """Execute the notebooks named, or every one in this folder."""
    paths = [Path(p) for p in argv] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        execute(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
