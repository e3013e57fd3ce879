"""Which files of an arrival day's raw folder are ingested, and why each other one is not.

Every file under ``raw/<day>/`` is accounted for: it is read, or it is listed (in the day's
reconciliation record and the log) as ignored with a reason, so a file upstream put in the
wrong place or under the wrong name is never lost without a trace. Read are the files directly
in the folder whose name ends in ``.jsonl`` or ``.jsonl.gz`` in any letter case (an export
tool that writes ``EVENTS.JSONL.GZ`` means the same format); other names (``.json``,
``.jsonl.gzip``, ``.txt``) are not guessed at. Hidden and temporary names (``.x``, ``_x``: an
upload in progress) and files in subfolders are not read either.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Matched against the lower-cased name.
RAW_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")
GZIP_SUFFIX = ".gz"

# Reasons a file is not ingested, as the reconciliation record states them.
NOT_A_LOG_FILE = "not a .jsonl or .jsonl.gz file"
HIDDEN_FILE = "hidden or temporary file (name starts with '.' or '_')"
IN_SUBFOLDER = "in a subfolder (only files directly in the arrival day's folder are read)"
NOT_A_FILE = "not a regular file"


@dataclass(frozen=True)
class IgnoredFile:
    """A file under the day's folder that is not read: its name as ``<day>/<path in the folder>``
    (the quarantine's ``source_file`` form) and why."""

    file: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason}


@dataclass(frozen=True)
class RawInventory:
    """The day's files to read (sorted) and the files left out, with their reasons (sorted)."""

    files: list[Path]
    ignored: list[IgnoredFile]


def is_gzip(path: Path) -> bool:
    """Whether ``path`` is read as gzip (its name ends in ``.gz``, any case)."""
    return path.name.lower().endswith(GZIP_SUFFIX)


def take_inventory(folder: Path) -> RawInventory:
    """Sort every entry under ``folder`` (an arrival day's raw folder) into read or ignored,
    logging one line per file."""
    day = folder.name
    files: list[Path] = []
    ignored: list[IgnoredFile] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            ignored += [IgnoredFile(f"{day}/{inner}", IN_SUBFOLDER) for inner in _files_below(entry, entry.name)]
        elif not entry.is_file():
            ignored.append(IgnoredFile(f"{day}/{entry.name}", NOT_A_FILE))
        elif entry.name.startswith((".", "_")):
            ignored.append(IgnoredFile(f"{day}/{entry.name}", HIDDEN_FILE))
        elif not entry.name.lower().endswith(RAW_FILE_SUFFIXES):
            ignored.append(IgnoredFile(f"{day}/{entry.name}", NOT_A_LOG_FILE))
        else:
            files.append(entry)
    ignored.sort(key=lambda item: item.file)
    for path in files:
        log.info("raw file %s/%s: ingested", day, path.name)
    for item in ignored:
        log.warning("raw file %s: ignored, %s", item.file, item.reason)
    return RawInventory(files=files, ignored=ignored)


def _files_below(folder: Path, prefix: str) -> list[str]:
    """Every non-folder entry below ``folder``, as ``prefix/<path>``. Links to folders are
    listed, not followed: a link loop cannot hang the job."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        # An unreadable subfolder is reported as what it is rather than failing the day.
        log.warning("raw subfolder %s cannot be listed: %s", folder, exc)
        return [prefix]
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found += _files_below(Path(entry.path), f"{prefix}/{entry.name}")
        else:
            found.append(f"{prefix}/{entry.name}")
    return found
