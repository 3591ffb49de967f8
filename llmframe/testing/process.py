"""The simulator in a child process, for benchmarks that must not share the client's CPU or GIL."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from .faults import Faults
from .simulator import API_KEY

# The directory holding the llmframe package, so the child imports the same code as the parent.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class SimulatorProcess:
    """Run `python -m llmframe.testing` as a subprocess and expose its URL, key and request count."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        max_seconds: float = 3600.0,
        startup_timeout: float = 30.0,
        rpm: int | None = None,
        tpm: int | None = None,
        burst_seconds: float = 60.0,
        error_rates: dict[int, float] | None = None,
        retry_after: float | None = 0.05,
        invalid_json_rate: float = 0.0,
        schema_violation_rate: float = 0.0,
        seed: int | None = None,
    ):
        self.latency = latency
        self.max_seconds = max_seconds
        # Checked here, so a bad value fails in the caller and not as a child that never gets READY.
        self.faults = Faults(rpm=rpm, tpm=tpm, burst_seconds=burst_seconds, error_rates=dict(error_rates or {}),
                             retry_after=retry_after, invalid_json_rate=invalid_json_rate,
                             schema_violation_rate=schema_violation_rate, seed=seed)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None  # kept after stop() for its exit code
        self._base_url: str | None = None
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Base URL to give the openai SDK; available once started."""
        if self._base_url is None:
            raise RuntimeError("SimulatorProcess is not started")
        return self._base_url

    @property
    def api_key(self) -> str:
        """A dummy key; the server accepts any non-empty bearer token."""
        return API_KEY

    @property
    def count(self) -> int:
        """Number of chat-completion requests the child has received."""
        return int(self.stats()["count"])

    def stats(self) -> dict:
        """The child's counts: {"count": n, "statuses": {"200": a, ...}, "faults": {"rpm": b, ...}}."""
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/_sim/stats", timeout=10) as resp:
            return json.load(resp)

    def start(self) -> SimulatorProcess:
        """Start the child and wait for its READY line, within startup_timeout."""
        if self._base_url is not None:
            return self
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "llmframe.testing", "--latency", str(self.latency)]
        cmd += ["--max-seconds", str(self.max_seconds), "--retry-after", str(self.faults.retry_after)]
        cmd += ["--burst-seconds", str(self.faults.burst_seconds)]
        for flag, value in (("--rpm", self.faults.rpm), ("--tpm", self.faults.tpm), ("--seed", self.faults.seed)):
            if value is not None:
                cmd += [flag, str(value)]
        for status, p in self.faults.error_rates.items():
            cmd += ["--error-rate", f"{status}={p!r}"]
        for flag, rate in (("--invalid-json-rate", self.faults.invalid_json_rate),
                           ("--schema-violation-rate", self.faults.schema_violation_rate)):
            if rate:
                cmd += [flag, repr(rate)]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env)
        lines: queue.Queue[str | None] = queue.Queue()
        # A thread reads stdout because a pipe read cannot time out portably; it drains to EOF.
        self._reader = threading.Thread(target=_pump, args=(self.process.stdout, lines), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                if line is None:
                    raise RuntimeError(f"simulator process exited with code {self.process.wait()} before READY")
                if line.startswith("READY "):
                    self._base_url = line.split(maxsplit=1)[1].strip()
                    return self
        except queue.Empty:
            self.stop()
            raise TimeoutError(f"simulator process not ready within {self.startup_timeout} s") from None
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the child, killing it if it does not exit within timeout; safe to call twice."""
        proc, self._base_url = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _pump(stream, lines: queue.Queue) -> None:
    """Copy lines from the child's stdout into a queue, then None at EOF."""
    for line in stream:
        lines.put(line)
    lines.put(None)
