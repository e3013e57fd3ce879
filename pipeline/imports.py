"""Importing a public data set into the raw folder, callable without a scheduler.

The manual ``import_public_log`` DAG calls this; the nightly DAG then ingests the arrival days it
wrote, like any other raw log. Heavy libraries are not involved: the importers are plain Python.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)


def import_public_log(settings: Settings, format: str, source: str | Path) -> dict[str, Any]:
    """Convert ``source`` (format ``format``, see ``ingest.importers.IMPORTERS``) into arrival-day
    files under ``settings.raw_dir``; returns the importer's summary (JSON-serialisable).

    ``source`` must be absolute: a scheduler's worker runs in a directory of its own choosing,
    where a relative path would silently point somewhere else.
    """
    from ingest.importers import import_log

    path = Path(source).expanduser()
    if not path.is_absolute():
        raise ValueError(f"source must be an absolute path, got {str(source)!r}")
    summary = import_log(format, path, settings.raw_dir)
    log.info(
        "imported %s rows of %s (%s) into %d arrival days: %d events, %d rows for the quarantine %s",
        summary["rows_read"], path, format, len(summary["arrival_days"]),
        summary["events_written"], summary["rejected"], summary["rejected_reasons"],
    )
    return summary
