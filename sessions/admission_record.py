"""Which arrival days the session tables leave out: the reading side of the admission record.

The record (``$RECSYS_HOME/quality/admission.jsonl``) is written by the quality gate and by
``python -m quality.admission`` (see :mod:`quality.admission`); the session tables' build reads
it here, one floor below the gate, to pass dbt the rejected days (var ``excluded_arrival_dates``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.settings import Settings

ADMISSION_FILE = "admission.jsonl"
REJECTED = "rejected"
READMITTED = "readmitted"


class AdmissionRecordUnreadable(UserError):
    """A line of the admission record is not an event: nothing may guess which days are out."""



def admission_path(settings: Settings) -> Path:
    return settings.quality_dir / ADMISSION_FILE


def read_events(settings: Settings) -> list[dict[str, Any]]:
    """Every event in the order recorded; raises :class:`AdmissionRecordUnreadable` on a bad line."""
    path = admission_path(settings)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            # Validated on every read: the dates end up in SQL (dbt's staging filter).
            event["arrival_date"] = date.fromisoformat(str(event["arrival_date"])).isoformat()
            if event["action"] not in (REJECTED, READMITTED):
                raise ValueError(f"unknown action {event['action']!r}")
        except (ValueError, TypeError, KeyError) as exc:
            raise AdmissionRecordUnreadable(
                f"admission record {path} line {number} is not an admission event ({exc})",
                fix="restore the line from a backup; the file is only ever appended to by the gate "
                    "and `recsys admission`",
            ) from None
        events.append(event)
    return events


def latest_events(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each recorded arrival day's latest event."""
    latest: dict[str, dict[str, Any]] = {}
    for event in read_events(settings):
        latest[event["arrival_date"]] = event
    return latest


def excluded_arrival_dates(settings: Settings) -> list[str]:
    """The arrival days whose rows stay out of the session tables, sorted."""
    return sorted(day for day, event in latest_events(settings).items() if event["action"] == REJECTED)
