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
LOCK_FILES = (REPO / "locks" / "build.txt", REPO / "locks" / "cpu.txt")


def _locked() -> dict[str, Version]:
    """Canonical name -> pinned version, read as pip reads a requirements file (hashes on continuation lines)."""
    pins: dict[str, Version] = {}
    for path in LOCK_FILES:
        for line in path.read_text().splitlines():
            line = line.strip().rstrip("\\").strip()
            if not line or line.startswith(("#", "--hash")):
                continue
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not an exact pin"
            name = canonicalize_name(requirement.name)
            assert name not in pins, f"{requirement.name} is pinned twice"
            pins[name] = Version(specifier.version)
    return pins


def test_lock_pins_every_declared_dependency_within_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(line) for line in project["dependencies"] + project["optional-dependencies"]["dev"]]
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


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO / ".venv").resolve(), reason="checks the .venv that make setup built")
def test_every_installed_distribution_is_locked_at_its_exact_version() -> None:
    locked = _locked()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    installed.pop("visheads-eval")
    unlocked = {name: str(version) for name, version in installed.items() if locked.get(name) != version}
    assert not unlocked, f"installed but not at a locked version: {unlocked}"
