"""Admission of arrival days: a day whose quality gate failed stays out of the session tables, and
so out of features, training and serving, until a person re-admits it.

The record is ``$RECSYS_HOME/quality/admission.jsonl``, one JSON event per line, never edited
in place: ``{"arrival_date", "action": "rejected" | "readmitted", "at", "by", "reason", ...}``.
A day is *excluded* while its latest event is a rejection. The gate's stage
(``pipeline.stages.check_quality``) records the rejection and rebuilds the session tables
without the day before it fails the run; dbt's staging model drops the excluded days' rows
(var ``excluded_arrival_dates``, passed by :func:`sessions.session_tables.dbt_vars`), and the
session tables' build record remembers the list it was built with, so a build after a crash
between the two steps still takes the day out.

Re-admission is one recorded command (or the nightly DAG's ``readmit`` Param for its run date);
the next ``build_sessions`` brings the day's rows back::

    python -m quality.admission list
    python -m quality.admission readmit 2026-11-20 --reason "duplicates were a client retry; checked"

A re-admitted day's own gate then reports its failures as warnings and passes (the person has
seen them), as long as the day's reconciliation record still says what it said when the day
was re-admitted: a day ingested again from other raw files is new data, judged afresh.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import hashlib
import json
import logging
import os
import sys
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from core.errors import UserError
from core.settings import Settings
from sessions.admission_record import (  # noqa: F401 - part of this module's interface
    ADMISSION_FILE, READMITTED, REJECTED, AdmissionRecordUnreadable, admission_path,
    excluded_arrival_dates, latest_events, read_events,
)

if TYPE_CHECKING:
    from quality.gate import GateVerdict

log = logging.getLogger(__name__)

GATE = "quality_gate"
READMIT_COMMAND = "recsys admission readmit {day} --reason '...'"


class NotRejected(UserError):
    """Re-admission of a day that is not excluded."""


class ArrivalDayExcluded(RuntimeError):
    """The run's own arrival day is excluded: its gate passed, but only a person re-admits it."""


def readmission(settings: Settings, day: date | str) -> dict[str, Any] | None:
    """The re-admission that lets ``day``'s gate failures pass as warnings, or None.

    Only while the day's reconciliation record still says what it said then: a day ingested
    again from other raw files is new data, judged by the gate like any other.
    """
    event = latest_events(settings).get(_iso(day))
    if event is None or event["action"] != READMITTED:
        return None
    if event.get("reconciliation_sha256") != _reconciliation_digest(settings, _iso(day)):
        return None
    return event


def record_rejection(settings: Settings, verdict: "GateVerdict", by: str = GATE) -> dict[str, Any]:
    """Append the rejection of the verdict's day (reason: its failed critical checks)."""
    day = verdict.run_date.isoformat()
    failures = list(verdict.failed_critical)
    reason = f"{len(failures)} critical check(s) failed: " + "; ".join(failures)
    return _append(settings, day, REJECTED, by=by, reason=reason,
                   extra={"failed_critical": failures, "data_docs_index": verdict.data_docs_index})


def readmit(settings: Settings, day: date | str, reason: str, by: str | None = None) -> dict[str, Any]:
    """Record that a person re-admits ``day``; raises :class:`NotRejected` unless it is excluded."""
    day = _iso(day)
    reason = " ".join(str(reason).split())
    if not reason:
        raise UserError("a re-admission needs a reason", fix="pass --reason 'what was checked'")
    with _locked(settings):
        event = latest_events(settings).get(day)
        if event is None or event["action"] != REJECTED:
            state = "never rejected" if event is None else f"already re-admitted by {event['by']} at {event['at']}"
            raise NotRejected(f"arrival day {day} is not excluded ({state})",
                              fix="`recsys admission list` shows the excluded days")
        return _append(settings, day, READMITTED, by=by or _person(), reason=reason, locked=True)


def enforce_admission(settings: Settings, verdict: "GateVerdict") -> "GateVerdict":
    """Stop the run on a failed gate after taking the day out; the verdict when the day may go on.

    A failed verdict: the day is recorded as rejected, the session tables are rebuilt without it
    (a failure of that rebuild is logged: the next build notices the changed list and does it)
    and :class:`~quality.gate.QualityGateFailed` is raised. A passed verdict for a day that is
    still excluded raises :class:`ArrivalDayExcluded`: the tables the gate saw did not hold it.
    """
    from quality.gate import enforce

    day = verdict.run_date.isoformat()
    was_excluded = day in excluded_arrival_dates(settings)
    if not verdict.passed:
        record_rejection(settings, verdict)
        log.error("arrival day %s rejected: its rows stay out of the session tables until a person "
                  "re-admits it (%s)", day, READMIT_COMMAND.format(day=day))
        if not was_excluded:
            _rebuild_without(settings, day)
        enforce(verdict)
    if was_excluded:
        event = latest_events(settings)[day]
        raise ArrivalDayExcluded(
            f"arrival day {day} was rejected by {event['by']} at {event['at']} and stays out of the "
            f"session tables; its gate passed on the tables without it. Re-admit it with "
            f"`{READMIT_COMMAND.format(day=day)}` or trigger nightly_recsys for it with readmit=true"
        )
    return verdict


def _rebuild_without(settings: Settings, day: str) -> None:
    from sessions.session_tables import build_pending_session_tables

    try:
        summary = build_pending_session_tables(settings)
    except Exception as exc:  # noqa: BLE001 - the gate's failure is what the run must report
        log.error("could not rebuild the session tables without %s now (%s); the next build "
                  "sees the changed exclusion list and does", day, exc)
        return
    log.info("session tables rebuilt without arrival day %s: %s", day,
             {k: summary.get(k) for k in ("mode", "models", "rows")})


# ---------------------------------------------------------------- the record file


def _append(settings: Settings, day: str, action: str, *, by: str, reason: str,
            extra: dict[str, Any] | None = None, locked: bool = False) -> dict[str, Any]:
    event = {
        "arrival_date": day,
        "action": action,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "by": by,
        "reason": reason,
        "reconciliation_sha256": _reconciliation_digest(settings, day),
        **(extra or {}),
    }
    with (_nothing() if locked else _locked(settings)):
        path = admission_path(settings)
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        tmp = path.with_name(f".{ADMISSION_FILE}.{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            out.write(old + json.dumps(event, sort_keys=True).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        # Readers see the old record or the new one, never half a line.
        os.replace(tmp, path)
    log.info("admission: %s %s by %s: %s", day, action, by, reason)
    return event


@contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    # The gate and a person's command may write at once; each rewrites the whole file.
    settings.quality_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.quality_dir / f".{ADMISSION_FILE}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _reconciliation_digest(settings: Settings, day: str) -> str | None:
    """What the day's reconciliation record says about its content, as a hash.

    ``affected_event_dates`` is left out: it is measured against the previous run of the day,
    so re-ingesting the same raw files changes it while the day stays the same.
    """
    try:
        raw = (settings.reconciliation_dir / f"{day}.json").read_bytes()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw)
        record.pop("affected_event_dates", None)
        raw = json.dumps(record, sort_keys=True).encode()
    except (ValueError, AttributeError):
        pass  # unreadable: the bytes themselves
    return hashlib.sha256(raw).hexdigest()


def _iso(day: date | str) -> str:
    if isinstance(day, datetime):
        return day.date().isoformat()
    if isinstance(day, date):
        return day.isoformat()
    try:
        return date.fromisoformat(str(day)).isoformat()
    except ValueError:
        raise UserError(f"not a date: {day!r}", fix="write it as YYYY-MM-DD") from None


def _person() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# ---------------------------------------------------------------- command line


def admission_listing(settings: Settings) -> list[str]:
    """One line per recorded arrival day, the excluded ones first."""
    latest = latest_events(settings)
    if not latest:
        return [f"no arrival day was ever rejected ({admission_path(settings)})"]
    return [f"{day}  {'EXCLUDED' if event['action'] == REJECTED else 'readmitted':<10}  {event['at']}  "
            f"by {event['by']}: {event['reason']}"
            for day, event in sorted(latest.items(), key=lambda kv: (kv[1]["action"] != REJECTED, kv[0]))]


def main(argv: list[str] | None = None) -> int:
    from core.cli_errors import add_debug_flag, user_errors

    parser = argparse.ArgumentParser(
        prog="python -m quality.admission",
        description="Arrival days the quality gate rejected, and their re-admission.")
    add_debug_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every recorded day's latest event (excluded days first)")
    again = commands.add_parser("readmit", help="let a rejected day back into the session tables "
                                                "from the next build on")
    again.add_argument("day", help="arrival date, YYYY-MM-DD")
    again.add_argument("--reason", required=True, help="what was checked (kept in the record)")
    again.add_argument("--by", default=None, help="who (default: the login name)")
    args = parser.parse_args(argv)
    with user_errors(debug=args.debug):
        settings = Settings.from_env()
        if args.command == "readmit":
            event = readmit(settings, args.day, args.reason, by=args.by)
            print(f"re-admitted {event['arrival_date']} (recorded in {admission_path(settings)}); "
                  "the next build_sessions brings its rows back")
            return 0
        print("\n".join(admission_listing(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
