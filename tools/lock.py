"""Regenerate the install lock that ``make setup`` installs from (``make lock`` runs this).

    python tools/lock.py            # writes locks/build.txt, locks/cpu.txt, locks/constraints.txt
    python tools/lock.py --upgrade  # the same, letting every distribution move within pyproject.toml's ranges

The lock is a clean-venv freeze, with hashes: a throw-away virtual environment is built the unlocked way
(``pip install -c constraints-cpu.txt torch==2.13.0``, then ``-e '.[dev]'`` within pyproject.toml's
ranges, then the CUDA torchvision that lmms-eval pulls in is removed, see the Makefile), ``pip freeze``
lists what it holds, and ``pip install --dry-run --report`` names the exact file pip picks for each pin
and its sha256. pip-tools and uv would resolve torch from PyPI's metadata (a CUDA build with its nvidia
wheels), not from the CPU wheel this machine installs, so the freeze is the honest record of what runs.

Three files come out:
- ``locks/build.txt``: pip, setuptools and hatchling with what it needs, installed first, so that the
  project and the few dependencies published only as source build with locked tools
  (``--no-build-isolation``) instead of whatever setuptools is newest that day;
- ``locks/cpu.txt``: every other distribution, exact version and hash;
- ``locks/constraints.txt``: the same pins without torch and without hashes, for ``pip install -c`` into
  an environment with its own (CUDA) torch.

Without ``--upgrade`` the throw-away environment is also constrained by the current
``locks/constraints.txt``, so adding a dependency adds it (and what it needs) and moves nothing already
locked; pip says which pin conflicts when a changed range in pyproject.toml needs ``--upgrade``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
COMMAND = "make lock (python tools/lock.py)"
# The build tools of the project (hatchling) and of the dependencies published only as source (setuptools).
BUILD_ROOTS = ("pip", "setuptools", "hatchling")
# Distributions a GPU environment brings itself: its own torch build and what that build needs.
GPU_OWN = ("torch", "triton")


def _run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, text=True, capture_output=True).stdout


def _freeze(venv: Path, keep: bool) -> list[str]:
    """Build the environment the unlocked way (``keep``: within the current lock) and list its distributions as ``name==version``."""
    python = venv / "bin" / "python"
    constraints = ["-c", REPO / "constraints-cpu.txt"]
    if keep and (LOCKS / "constraints.txt").is_file():
        constraints += ["-c", LOCKS / "constraints.txt"]
    _run(sys.executable, "-m", "venv", venv)
    _run(python, "-m", "pip", "install", "--quiet", "--upgrade", *constraints, "pip")
    _run(python, "-m", "pip", "install", "--quiet", *constraints, "torch==2.13.0")
    _run(python, "-m", "pip", "install", "--quiet", *constraints, "-e", f"{REPO}[dev]")
    _run(python, "-m", "pip", "uninstall", "--quiet", "--yes", "torchvision")
    return [line for line in _run(python, "-m", "pip", "freeze", "--all", "--exclude-editable").splitlines() if line]


def _artifacts(venv: Path, pins: list[str], work: Path) -> dict[str, dict]:
    """Canonical name -> pip's report entry (the file pip installs for the pin, with its hash)."""
    requirements, report = work / "pins.txt", work / "report.json"
    requirements.write_text("\n".join(pins) + "\n")
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--no-deps",
        "--report",
        report,
        "-r",
        requirements,
    )
    return {canonicalize_name(item["metadata"]["name"]): item for item in json.loads(report.read_text())["install"]}


def _closure(roots: tuple[str, ...], artifacts: dict[str, dict]) -> set[str]:
    """The roots and, transitively, what their metadata requires in this environment."""
    environment = default_environment() | {"extra": ""}
    seen: set[str] = set()
    todo = [canonicalize_name(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in artifacts[name]["metadata"].get("requires_dist", []):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                todo.append(canonicalize_name(requirement.name))
    return seen


def _pin(item: dict, hashed: bool) -> str:
    pin = f"{item['metadata']['name']}=={item['metadata']['version']}"
    if not hashed:
        return pin
    return f"{pin} \\\n    --hash=sha256:{item['download_info']['archive_info']['hashes']['sha256']}"


def _write(path: Path, purpose: str, items: list[dict], hashed: bool) -> None:
    header = [
        f"# {purpose}",
        f"# Generated by `{COMMAND}` for CPython {sys.version_info.major}.{sys.version_info.minor} on Linux x86_64; do not edit by hand.",
    ]
    lines = [_pin(item, hashed) for item in sorted(items, key=lambda i: canonicalize_name(i["metadata"]["name"]))]
    path.write_text("\n".join(header + lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python tools/lock.py", description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="let locked distributions move within pyproject.toml's ranges")
    args = parser.parse_args()
    LOCKS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="visheads-lock-") as tmp:
        venv = Path(tmp, "venv")
        try:
            pins = _freeze(venv, keep=not args.upgrade)
        except subprocess.CalledProcessError as error:
            conflict = (error.stderr or "").strip().splitlines()
            sys.exit(
                f"lock.py: error: {' '.join(map(str, error.cmd[2:5]))} failed: {conflict[-1] if conflict else error}; "
                "if a range in pyproject.toml moved past the lock, run with --upgrade"
            )
        artifacts = _artifacts(venv, pins, Path(tmp))
    build = _closure(BUILD_ROOTS, artifacts)
    rest = [item for name, item in artifacts.items() if name not in build]
    _write(
        LOCKS / "build.txt",
        "Build tools, installed first: pip install --require-hashes --no-deps -r locks/build.txt",
        [artifacts[name] for name in build],
        hashed=True,
    )
    _write(
        LOCKS / "cpu.txt",
        "Everything else make setup installs: pip install --require-hashes --no-deps --no-build-isolation -r locks/cpu.txt",
        rest,
        hashed=True,
    )
    _write(
        LOCKS / "constraints.txt",
        "The tested versions, for `pip install -c locks/constraints.txt` into an environment that brings its own torch",
        [item for name, item in artifacts.items() if name not in GPU_OWN and not name.startswith("nvidia-")],
        hashed=False,
    )
    print(f"locked {len(artifacts)} distributions ({len(build)} build tools) into {LOCKS.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
