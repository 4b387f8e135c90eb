"""Writing into a folder someone named, without ever deleting or overwriting a file EmoForge did not write.

Exports (dataset versions, models) go into a new or empty folder. A folder that holds anything is
refused unless the caller forces it, and even then only the files that an earlier EmoForge export
listed in the folder's manifest (`.emoforge-manifest.json`) are replaced; any other file the new
export would overwrite stops it before the folder changes.

The files are first written into a staging folder inside the target, so that clash is found with
the export's real file names (a `datasets` folder names its own files) and an export that fails
half-way leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MANIFEST = ".emoforge-manifest.json"
STAGING_PREFIX = ".emoforge-partial-"
STAGING_MARKER = ".emoforge-staging"
WRITTEN_BY = "EmoForge"


class FolderNotSafe(ValueError):
    """Writing here would touch files EmoForge did not write; the message says which and what to do."""


def staged_files(staging: Path) -> list[str]:
    """The files written so far into a staging folder, relative to it (the marker left out)."""
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*")
                  if p.is_file() and str(p.relative_to(staging)) not in (STAGING_MARKER, MANIFEST))


@contextmanager
def writing_into(target: str | Path, *, force: bool = False, what: str = "export") -> Iterator[Path]:
    """Yield a staging folder; when the block ends without error its files replace ours in `target`.

    `target` may be new (it is created), empty, or (with `force`) a folder an earlier export wrote
    into. Returns nothing; `manifest_files(target)` lists what the folder now holds from EmoForge.
    """
    target = Path(target)
    previous = _previous_files(target, force)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
    (staging / STAGING_MARKER).write_text("EmoForge writes here, then moves the files up.\n")
    try:
        yield staging
        _publish(staging, target, previous, what)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # a failed export into a folder it made leaves nothing behind


def manifest_files(folder: str | Path) -> list[str]:
    """The files EmoForge wrote into `folder` (relative paths), or [] when it has no manifest of ours."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FolderNotSafe(f"{path} is not a manifest EmoForge wrote; not touching {folder}.") from None
    if not isinstance(data, dict) or data.get("written_by") != WRITTEN_BY or not isinstance(data.get("files"), list):
        raise FolderNotSafe(f"{path} is not a manifest EmoForge wrote; not touching {folder}.")
    return [name for name in data["files"] if isinstance(name, str) and _inside(folder, name)]


def _inside(folder: Path, name: str) -> bool:
    """A manifest entry is honoured only when it names a path inside the folder (no '..', no symlink out)."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return False
    root = folder.resolve()
    return root in (folder / relative).resolve().parents


def _previous_files(target: Path, force: bool) -> set[str]:
    """What we may replace in `target`: nothing in a new or empty folder, the manifest's files with `force`."""
    if not target.exists():
        return set()
    if not target.is_dir():
        raise FolderNotSafe(f"{target} is a file, not a folder; choose a new folder.")
    _remove_stale_staging(target)
    if not any(target.iterdir()):
        return set()
    if not force:
        raise FolderNotSafe(
            f"{target} is not empty; choose a new folder, or force it (--force) to replace only the files "
            f"an earlier EmoForge export wrote there."
        )
    return set(manifest_files(target))


def _remove_stale_staging(target: Path) -> None:
    """Staging folders left by a killed export: ours when they hold our marker, and only then removed."""
    for entry in target.glob(f"{STAGING_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink() and (entry / STAGING_MARKER).is_file():
            shutil.rmtree(entry, ignore_errors=True)


def _publish(staging: Path, target: Path, previous: set[str], what: str) -> None:
    new = staged_files(staging)
    clashes = [name for name in [*new, MANIFEST] if _clashes(target, name, previous)]
    if clashes:
        raise FolderNotSafe(
            f"{target / clashes[0]} was not written by EmoForge and the export would overwrite it"
            f"{f' ({len(clashes) - 1} more)' if len(clashes) > 1 else ''}; nothing in {target} was changed. "
            f"Choose a new folder."
        )
    for name in sorted(previous):
        path = target / name
        if path.is_file() or path.is_symlink():
            path.unlink()
        _remove_empty_parents(path.parent, target)
    for name in new:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, destination)
    manifest = {"written_by": WRITTEN_BY, "what": what, "files": new}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _clashes(target: Path, name: str, previous: set[str]) -> bool:
    """True when writing `name` would overwrite something that is not ours (a file, or a file where a folder goes)."""
    if name == MANIFEST:
        return (target / MANIFEST).exists() and not _is_our_manifest(target)
    path = target / name
    parts = Path(name).parts
    for depth in range(1, len(parts)):
        parent = target.joinpath(*parts[:depth])
        if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
            return str(Path(*parts[:depth])) not in previous
    if path.is_dir() and not path.is_symlink():
        return True
    return (path.exists() or path.is_symlink()) and name not in previous


def _is_our_manifest(target: Path) -> bool:
    try:
        manifest_files(target)
    except FolderNotSafe:
        return False
    return True


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
