"""Create the peer tools' virtual environments, apart from llmframe's own.

python benchmarks/peers/setup.py [--only curator|lotus] [--force]

Makes benchmarks/.work/venv-curator (bespokelabs-curator) and benchmarks/.work/venv-lotus (lotus-ai, with the
CPU build of torch installed first). A venv whose peer already imports is left alone. Each venv gets a
peer.json naming the tool, its version and the tiktoken cache folder the runner scripts point
TIKTOKEN_CACHE_DIR at (nothing can be downloaded at run time here).

The peers are never dependencies of llmframe: nothing here touches the main environment.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
WORK = BENCH / ".work"
CONSTRAINTS = WORK / "peer-constraints.txt"
# torch pinned in every peer venv: a bare or ranged torch request would otherwise pull a multi-GB CUDA build.
TORCH = "torch==2.13.0"

PEERS = {
    "curator": {
        "venv": WORK / "venv-curator",
        "dist": "bespokelabs-curator",
        "pin": "0.1.31",
        "module": "bespokelabs.curator",
        "first": [],
    },
    "lotus": {
        "venv": WORK / "venv-lotus",
        "dist": "lotus-ai",
        "pin": "1.2.4",
        "module": "lotus",
        "first": [TORCH],  # before lotus-ai, so sentence-transformers finds a torch it accepts
    },
}

# Run inside the venv: the peer imports, and where tiktoken's cached encodings lie (litellm bundles them).
PROBE = r"""
import importlib, importlib.metadata as md, json, pathlib, sys
importlib.import_module(sys.argv[1])
cache = None
try:
    import litellm
    root = pathlib.Path(litellm.__file__).parent
    for path in sorted(root.rglob("*")):
        # tiktoken names cached files by the sha1 of their URL: 40 hex digits, no suffix
        if path.is_file() and len(path.name) == 40 and all(c in "0123456789abcdef" for c in path.name):
            cache = str(path.parent)
            break
except ImportError:
    pass
torch = None
try:
    torch = md.version("torch")
except md.PackageNotFoundError:
    pass
print(json.dumps({"version": md.version(sys.argv[2]), "tiktoken_cache": cache, "torch": torch}))
"""


def say(msg: str) -> None:
    print(f"[peers/setup] {msg}", flush=True)


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def probe(name: str) -> dict | None:
    """What the venv holds, or None if the peer does not import there."""
    peer = PEERS[name]
    py = python_of(peer["venv"])
    if not py.exists():
        return None
    proc = subprocess.run([str(py), "-c", PROBE, peer["module"], peer["dist"]], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "TELEMETRY_ENABLED": "false",
                               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if name == "lotus" and not (info["torch"] or "").startswith("2.13.0"):
        say(f"{name}: venv has torch {info['torch']}, not 2.13.0 (CPU)")
        return None
    return info


def pip(env: Path, *args: str) -> bool:
    cmd = [str(python_of(env)), "-m", "pip", "install", "--disable-pip-version-check", "-c", str(CONSTRAINTS), *args]
    say("$ " + " ".join(cmd))
    return subprocess.run(cmd).returncode == 0


def build(name: str) -> dict:
    """(Re)create one venv; returns its probe, or exits non-zero."""
    peer = PEERS[name]
    env = peer["venv"]
    if env.exists():
        say(f"{name}: removing broken or forced venv {env}")
        shutil.rmtree(env)
    say(f"{name}: creating {env}")
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    for req in peer["first"]:
        if not pip(env, req):
            sys.exit(f"[peers/setup] ERROR: {name}: `pip install {req}` failed in {env}")
    if not pip(env, f"{peer['dist']}=={peer['pin']}"):
        say(f"{name}: {peer['dist']}=={peer['pin']} did not install; trying the newest release that does")
        if not pip(env, peer["dist"]):
            sys.exit(f"[peers/setup] ERROR: {name}: neither {peer['dist']}=={peer['pin']} nor the newest "
                     f"{peer['dist']} installs in {env} (see pip's output above)")
    info = probe(name)
    if info is None:
        sys.exit(f"[peers/setup] ERROR: {name}: {peer['dist']} installed but `import {peer['module']}` fails in "
                 f"{env}; try: {python_of(env)} -c 'import {peer['module']}'")
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(PEERS), action="append", help="set up only this peer (repeatable)")
    p.add_argument("--force", action="store_true", help="rebuild even a venv that works")
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    CONSTRAINTS.write_text(TORCH + "\n")
    for name in args.only or sorted(PEERS):
        peer = PEERS[name]
        info = None if args.force else probe(name)
        if info is not None:
            say(f"{name}: {peer['venv']} already works ({peer['dist']} {info['version']}); skipped")
        else:
            info = build(name)
            say(f"{name}: installed {peer['dist']} {info['version']}"
                + (f" (pin {peer['pin']} failed)" if info["version"] != peer["pin"] else ""))
        if info["tiktoken_cache"] is None:
            say(f"{name}: WARNING: found no bundled tiktoken cache; token counting may try to download")
        (peer["venv"] / "peer.json").write_text(json.dumps({"tool": name, "dist": peer["dist"], **info}, indent=1))
        say(f"{name}: torch {info['torch']}, tiktoken cache {info['tiktoken_cache']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
