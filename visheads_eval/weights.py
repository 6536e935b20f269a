"""Which weights a run loaded: the checkpoint, its revision, a cheap digest of its files, and the dtype.

A run is identified by what was loaded, not by the model's name: re-training the organism, another
``revision=`` or another ``dtype`` is another run. The digest is a SHA-256 over the config and weight
files of the checkpoint folder (``config.json``, ``*.safetensors``, ``*.bin``, their indexes, ``*.gguf``):
each file's name, size and either its content hash, where the Hugging Face cache names the file's blob by
it, or its modification time. It reads no weights, so it costs nothing at 13B; copying a local folder
(new modification times) makes a new digest. A hub id not yet in the local cache has no digest until it
is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

WEIGHT_PATTERNS = ("config.json", "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.gguf")
IDENTITY_KEYS = ("checkpoint", "revision", "commit", "digest", "dtype")


def file_sha256(path: Path) -> str:
    """The SHA-256 of one file's content (hex), read in blocks."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def checkpoint_folder(pretrained: str, revision: str = "main") -> tuple[Path | None, str | None]:
    """The local folder of ``pretrained`` (a folder, or a hub id's snapshot in the cache) and the hub
    commit it is, if any; ``(None, None)`` for a hub id that is not in the cache."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return path.resolve(), None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(pretrained, "config.json", revision=revision)
    if not isinstance(cached, str):
        return None, None
    snapshot = Path(cached).parent
    return snapshot, snapshot.name


def files_digest(folder: Path) -> str:
    """SHA-256 (16 hex digits) over the config and weight files' names, sizes and content hashes or mtimes."""
    digest = hashlib.sha256()
    files = sorted({file for pattern in WEIGHT_PATTERNS for file in folder.glob(pattern) if file.is_file()})
    for file in files:
        target = Path(os.path.realpath(file))
        stat = target.stat()
        # The Hugging Face cache links each file to a blob named by its content hash.
        token = target.name if file.is_symlink() and target.parent.name == "blobs" else str(stat.st_mtime_ns)
        digest.update(f"{file.name}\t{stat.st_size}\t{token}\n".encode())
    return digest.hexdigest()[:16]


def weights_identity(pretrained: str, revision: str = "main", dtype: Any = "auto") -> dict[str, str | None]:
    """What loading ``pretrained`` at ``revision`` in ``dtype`` loads, as :data:`IDENTITY_KEYS`."""
    folder, commit = checkpoint_folder(pretrained, revision)
    local = folder is not None and commit is None
    return {
        "checkpoint": str(folder) if local else pretrained,
        "revision": None if local else str(revision),
        "commit": commit,
        "digest": files_digest(folder) if folder is not None else None,
        "dtype": str(dtype),
    }


def weights_difference(found: dict[str, Any] | None, expected: dict[str, Any] | None) -> str:
    """``"digest 'a' vs 'b', ..."`` for the identity keys that differ, or ``""``."""
    found, expected = found or {}, expected or {}
    return ", ".join(f"{key} {found.get(key)!r} vs {expected.get(key)!r}" for key in IDENTITY_KEYS if found.get(key) != expected.get(key))
