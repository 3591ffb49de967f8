"""Durable job state: one small JSON file per job, and one key list per chunk, in the cache directory.

Written before anything waits, so a killed kernel re-attaches to its jobs instead of submitting again.
Never holds an API key: a job names its provider, model and endpoint, and the key comes from the
environment (or api_key=) of whoever resumes it.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import constants

# A chunk's life: "new" (recorded, not yet created) -> "running" (the provider has it) -> "ended"
# (the provider finished, cancelled or expired it) -> "collected" (its answers are in the cache).
NEW, RUNNING, ENDED, COLLECTED = "new", "running", "ended", "collected"


@dataclass
class Chunk:
    """One provider batch: which requests it holds and where it stands."""

    uid: str  # ours: "<job id>-<n>", also sent to the provider as metadata or display name
    requests: int
    status: str = NEW
    batch_id: str | None = None  # the provider's
    state: str | None = None  # the provider's own word for its state
    done: int = 0  # requests the provider reports finished
    succeeded: int = 0  # answers that came back (known once collected)
    failed: int = 0  # requests that errored, expired or were cancelled (known once collected)
    created: float = field(default_factory=time.time)
    cancel_requested: bool = False


@dataclass
class Job:
    """The batches of one generate call, identified by its requests, so the same call finds them again."""

    id: str
    model: str  # "provider:model", as passed to generate
    base_url: str | None
    requests: int  # distinct requests of the call
    created: float = field(default_factory=time.time)
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def provider(self) -> str:
        return self.model.split(":", 1)[0]

    def active(self) -> list[Chunk]:
        """Chunks whose answers are not in the cache yet."""
        return [c for c in self.chunks if c.status != COLLECTED]

    def summary(self) -> dict:
        """A plain dict for listings: the job and each chunk's progress."""
        status = "done" if not self.active() else ("cancelling" if any(c.cancel_requested for c in self.active())
                                                     else "running")
        return {
            "id": self.id,
            "model": self.model,
            "base_url": self.base_url,
            "status": status,
            "requests": self.requests,
            "created": self.created,
            "chunks": [{k: getattr(c, k) for k in ("uid", "batch_id", "status", "state", "requests", "done",
                                                   "succeeded", "failed")} for c in self.chunks],
        }


class BatchStateWarning(UserWarning):
    """A batch state file that could not be read, and was skipped."""


class DamagedState(Exception):
    """A job file that cannot be read: which one, why, and how to remove it."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why
        super().__init__(f"batch state file {path} is damaged ({why}): skipped. Re-running the call that made it "
                         f"rebuilds it; or delete it with: rm -r '{path}' '{path.with_suffix('')}'")

    def summary(self) -> dict:
        """The listing entry of a damaged job: what batches() shows instead of its batches."""
        try:
            created = self.path.stat().st_mtime
        except OSError:
            created = 0.0
        return {"id": self.path.stem, "model": None, "base_url": None, "status": "damaged", "requests": 0,
                "created": created, "chunks": [], "file": str(self.path), "error": str(self)}


class StateStore:
    """The job files of one cache directory."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.root = Path(cache_dir) / constants.BATCH_STATE_DIR

    def _path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def load(self, job_id: str) -> Job | None:
        """The job with this id, or None if there is none; DamagedState if its file cannot be read."""
        path = self._path(job_id)
        try:
            raw = json.loads(path.read_text())
            chunks = [Chunk(**c) for c in raw.pop("chunks")]
            return Job(**raw, chunks=chunks)
        except FileNotFoundError:
            return None
        # Truncated or empty (a crash of the file system), edited by hand, or written by another version.
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DamagedState(path, f"{type(exc).__name__}: {exc}") from None

    def save(self, job: Job) -> None:
        """Write the job atomically (a crash leaves the old file or the new one, never half of one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(job.id)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, path)

    def save_keys(self, job: Job, chunk: Chunk, keys: list[str]) -> None:
        """The request keys of a chunk (its custom ids), one per line, written once before it is created."""
        folder = self.root / job.id
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{chunk.uid}.keys.tmp"
        tmp.write_text("\n".join(keys))
        os.replace(tmp, folder / f"{chunk.uid}.keys")

    def keys(self, job: Job, chunk: Chunk) -> list[str] | None:
        """The request keys of a chunk, in submission order; None (and a warning) when its key file is gone."""
        path = self.root / job.id / f"{chunk.uid}.keys"
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            warnings.warn(f"batch key file {path} cannot be read ({type(exc).__name__}): the batch's answers are "
                          "still collected by their ids; rows it held that come back without one are asked again "
                          "by the next run", BatchStateWarning, stacklevel=3)
            return None
        return text.split("\n") if text else []

    def recorded(self, job: Job) -> list[Chunk]:
        """The chunks whose key files this job left, as never created: what a damaged job file is rebuilt from."""
        chunks = []
        for path in sorted((self.root / job.id).glob("*.keys"), key=lambda p: (len(p.name), p.name)):
            try:
                text = path.read_text()
                created = path.stat().st_mtime  # written just before the batch was created
            except OSError:
                continue
            chunks.append(Chunk(path.name.removesuffix(".keys"), text.count("\n") + 1 if text else 0,
                                created=created))
        return chunks

    def drop_keys(self, job: Job, chunk: Chunk) -> None:
        """Forget a chunk's key file (a chunk the provider refused to create)."""
        (self.root / job.id / f"{chunk.uid}.keys").unlink(missing_ok=True)

    def delete(self, job: Job) -> None:
        """Forget a job: its file and its chunks' key files."""
        self._path(job.id).unlink(missing_ok=True)
        shutil.rmtree(self.root / job.id, ignore_errors=True)

    def scan(self) -> tuple[list[Job], list[DamagedState]]:
        """Every job recorded here, oldest first, and the job files that could not be read."""
        if not self.root.is_dir():
            return [], []
        jobs, damaged = [], []
        for path in self.root.glob("*.json"):
            try:
                job = self.load(path.stem)
            except DamagedState as exc:
                damaged.append(exc)
                continue
            if job is not None:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j.created), damaged
