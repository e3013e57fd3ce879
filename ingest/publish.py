"""Atomic publication of an arrival day's run in the lake, and the records around it.

Publication is atomic for readers (docs/architecture.md, "Lake"): a run writes its arrival day
into ``lake/_staging/`` (``staging_dir``; ``ingest.staging`` writes and counts it there),
``publish`` moves the result under ``lake/_versions/arrival_date=<a>/<run>/`` and switches the
day's ``current`` link to it with one rename. ``events/event_date=<d>/arrival_date=<a>`` and
``quarantine/arrival_date=<a>`` are links through ``current``, so a reader of
``events/*/*/*.parquet`` sees the whole previous run of the day or the whole new one; a run
killed at any point leaves the previous one in place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from core.settings import Settings

# Lake layout around publication (docs/architecture.md, "Lake"). Both folders are beside
# events/ and quarantine/, outside every reader's glob.
STAGING_FOLDER = "_staging"
VERSIONS_FOLDER = "_versions"
CURRENT_LINK = "current"
MANIFEST_FILE = "_manifest.json"
# The manifest of the version the latest reconciliation record vouched for: what "changed"
# is measured against, so a run killed between publishing and recording is not forgotten.
RECONCILED_FILE = "reconciled.json"


def staging_dir(settings: Settings, arrival_date: date) -> Path:
    return settings.lake_dir / STAGING_FOLDER / f"arrival_date={arrival_date.isoformat()}"


def versions_dir(settings: Settings, arrival_date: date) -> Path:
    return settings.lake_dir / VERSIONS_FOLDER / f"arrival_date={arrival_date.isoformat()}"


def _event_link(settings: Settings, event_day: str, arrival_date: date) -> tuple[Path, str]:
    """Where the lake shows this day's events of ``event_day``, and the link's (relative) target."""
    tag = f"arrival_date={arrival_date.isoformat()}"
    link = settings.events_dir / f"event_date={event_day}" / tag
    # Relative, so a lake moved or mounted elsewhere keeps working.
    return link, f"../../{VERSIONS_FOLDER}/{tag}/{CURRENT_LINK}/events/event_date={event_day}"


def _quarantine_link(settings: Settings, arrival_date: date) -> tuple[Path, str]:
    tag = f"arrival_date={arrival_date.isoformat()}"
    return settings.quarantine_dir / tag, f"../{VERSIONS_FOLDER}/{tag}/{CURRENT_LINK}/quarantine"


def _published_event_days(settings: Settings, arrival_date: date) -> set[str]:
    """Event dates for which readers now see files of this arrival day."""
    pattern = f"event_date=*/arrival_date={arrival_date.isoformat()}/*.parquet"
    return {path.parent.parent.name.removeprefix("event_date=") for path in settings.events_dir.glob(pattern)}


def changed_event_dates(settings: Settings, arrival_date: date, new: dict[str, dict[str, Any]]) -> list[str]:
    """Event dates whose rows of this arrival day differ from the last reconciled run's.

    ``new``: the staged run's ISO event date -> ``{"rows": n, "fingerprint": ...}``.
    """
    try:
        reconciled = json.loads((versions_dir(settings, arrival_date) / RECONCILED_FILE).read_text("utf-8"))
        old = reconciled["event_dates"]
    except FileNotFoundError:
        # No run of this day reconciled with a manifest (a first run, a lake from before
        # versioned publication, or a first run killed after its swap): every date it shows
        # now and every date it will show count as changed.
        return sorted(set(new) | _published_event_days(settings, arrival_date))
    return sorted(day for day in set(old) | set(new) if old.get(day) != new.get(day))


def publish(settings: Settings, arrival_date: date, run_dir: Path, run_id: str, event_days: list[str]) -> None:
    """Make ``run_dir`` the day's visible version with one rename (see the module docstring)."""
    versions = versions_dir(settings, arrival_date)
    versions.mkdir(parents=True, exist_ok=True)
    # Complete and counted: from here on the folder only moves as a whole.
    os.rename(run_dir, versions / run_id)

    # Links first. A link to a date the current version does not have dangles, and a dangling
    # link is an empty folder to every reader (DuckDB, Spark, pyarrow, pathlib) until the swap.
    legacy: list[tuple[Path, str]] = []
    wanted = [_event_link(settings, day, arrival_date) for day in event_days]
    wanted.append(_quarantine_link(settings, arrival_date))
    for link, target in wanted:
        if link.is_symlink():
            if os.readlink(link) != target:
                _place_link(link, target, versions)
        elif link.exists():
            legacy.append((link, target))
        else:
            link.parent.mkdir(parents=True, exist_ok=True)
            _place_link(link, target, versions)

    # The commit: one rename of a link. Every link of the day now resolves into the new version.
    _place_link(versions / CURRENT_LINK, run_id, versions)

    # Folders written by the job before versioned publication become links; this one-time
    # change per arrival day is not atomic (each folder flips on its own).
    for link, target in legacy:
        retired = versions / f".retired-{uuid.uuid4().hex}"
        os.rename(link, retired)
        _place_link(link, target, versions)
        shutil.rmtree(retired)
    # Dates this run no longer has: their links dangle since the swap (empty to readers); remove
    # them and the event-date folders left empty.
    keep = {f"event_date={day}" for day in event_days}
    tag = f"arrival_date={arrival_date.isoformat()}"
    # Not Path.glob: it does not list dangling links.
    for link in (folder / tag for folder in settings.events_dir.glob("event_date=*")):
        if link.parent.name in keep or not os.path.lexists(link):
            continue
        if link.is_symlink():
            link.unlink()
        else:
            retired = versions / f".retired-{uuid.uuid4().hex}"
            os.rename(link, retired)
            shutil.rmtree(retired)
        try:
            link.parent.rmdir()
        except OSError:
            pass  # other arrival days still have events on that date


def _place_link(path: Path, target: str, scratch: Path) -> None:
    """Create or replace the symlink ``path`` -> ``target`` atomically (rename over it).

    The temporary link is made in ``scratch``, outside every reader's glob; rename keeps the
    link's text, so the relative target resolves from ``path``'s folder once in place.
    """
    temporary = scratch / f".link-{uuid.uuid4().hex}"
    os.symlink(target, temporary)
    os.replace(temporary, path)


def collect_garbage(settings: Settings, arrival_date: date) -> None:
    """Drop superseded versions of the day, keeping the one before current for in-flight readers."""
    versions = versions_dir(settings, arrival_date)
    current = os.readlink(versions / CURRENT_LINK)
    older = sorted(
        (path for path in versions.iterdir()
         if path.is_dir() and not path.is_symlink() and not path.name.startswith(".") and path.name != current),
        key=lambda path: path.name,
    )
    for path in older[:-1]:
        shutil.rmtree(path, ignore_errors=True)
    for path in versions.glob(".*"):  # temporary links and retired folders of killed runs
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(staging_dir(settings, arrival_date), ignore_errors=True)


def replace_parquet(path: Path, table: Any) -> None:
    """Write the Arrow ``table`` to ``path`` whole or not at all: a reader sees the previous file
    or the new one. The temporary file is dot-prefixed and not ``*.parquet``, so neither DuckDB's
    glob nor Spark lists it while it is written."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: the quality gate may read it at any time.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
