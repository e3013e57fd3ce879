"""No raw file is lost without a trace: every file under an arrival day's raw folder is either
ingested or named in the reconciliation record as ignored, with its reason, and logged; the
quality gate warns when files were ignored. ``.JSONL`` / ``.JSONL.GZ`` (any letter case) are the
same format and are ingested; other names are not guessed at.

One ingestion of a day holding every kind of odd file backs the Spark tests (module-scoped)."""

from __future__ import annotations

import gzip
import json
import logging
import os
from datetime import date

import pytest

DAY = date(2026, 11, 5)
D = DAY.isoformat()

NOT_A_LOG_FILE = "not a .jsonl or .jsonl.gz file"
IN_SUBFOLDER = "in a subfolder (only files directly in the arrival day's folder are read)"
HIDDEN = "hidden or temporary file (name starts with '.' or '_')"
NOT_A_FILE = "not a regular file"


def event(event_id: str) -> str:
    return json.dumps({"event_id": event_id, "event_time": "2026-11-05T10:00:00Z", "user_id": "u1",
                       "item_id": "i1", "event_type": "view"}, separators=(",", ":"))


def payload(*event_ids: str) -> bytes:
    return "".join(event(e) + "\n" for e in event_ids).encode()


# Path in the day's folder -> (bytes, whether ingested); the event ids name the file.
RAW_FILES = {
    "events.jsonl": (payload("plain-1"), True),
    "packed.jsonl.gz": (gzip.compress(payload("packed-1")), True),
    "UPPER.JSONL": (payload("upper-1", "upper-2"), True),
    "UPPER.JSONL.GZ": (gzip.compress(payload("upper-gz-1", "upper-gz-2")), True),
    "Mixed.Jsonl.Gz": (gzip.compress(payload("mixed-gz-1")), True),
    "export.json": (payload("json-1"), False),
    "export.jsonl.gzip": (gzip.compress(payload("gzip-1")), False),
    "notes.txt": (b"not a log\n", False),
    "late/part-1.jsonl": (payload("sub-1"), False),
    "late/deeper/part-2.jsonl.gz": (gzip.compress(payload("sub-2")), False),
    ".upload.jsonl": (payload("hidden-1"), False),
    "_tmp-part.jsonl": (payload("hidden-2"), False),
}
IGNORED = [
    {"file": f"{D}/.upload.jsonl", "reason": HIDDEN},
    {"file": f"{D}/_tmp-part.jsonl", "reason": HIDDEN},
    {"file": f"{D}/dangling.jsonl", "reason": NOT_A_FILE},
    {"file": f"{D}/export.json", "reason": NOT_A_LOG_FILE},
    {"file": f"{D}/export.jsonl.gzip", "reason": NOT_A_LOG_FILE},
    {"file": f"{D}/late/deeper/part-2.jsonl.gz", "reason": IN_SUBFOLDER},
    {"file": f"{D}/late/part-1.jsonl", "reason": IN_SUBFOLDER},
    {"file": f"{D}/notes.txt", "reason": NOT_A_LOG_FILE},
]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Settings, reconciliation record, log records, lake event ids and quarantine reasons of
    one run over a day holding every kind of file."""
    from ingest.ingest_day import ingest_arrival_day
    from ingest.schema import LAKE_EVENT_SCHEMA, QUARANTINE_SCHEMA
    from core.settings import Settings

    settings = Settings(home=tmp_path_factory.mktemp("raw-files"), spark_master="local[2]")
    folder = settings.raw_dir / D
    for name, (content, _) in RAW_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    os.symlink(folder / "gone.jsonl", folder / "dangling.jsonl")  # a link to nothing

    handler = _Collect()
    logger = logging.getLogger("ingest")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        record = ingest_arrival_day(settings, DAY, spark)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lake = spark.read.schema(LAKE_EVENT_SCHEMA).parquet(str(settings.events_dir)).collect()
    quarantine = spark.read.schema(QUARANTINE_SCHEMA).parquet(
        str(settings.quarantine_dir / f"arrival_date={D}")).collect()
    return {
        "settings": settings,
        "record": record,
        "log": handler.records,
        "lake": sorted(row["event_id"] for row in lake),
        "quarantine": [(row["reason"], row["source_file"]) for row in quarantine],
    }


@pytest.mark.slow
def test_files_outside_the_pattern_are_in_the_reconciliation_with_a_reason(ingested: dict) -> None:
    record = ingested["record"]
    assert record["ignored_files"] == IGNORED
    assert record["ingested_files"] == sorted(f"{D}/{name}" for name, (_, read) in RAW_FILES.items() if read)
    listed = {item["file"] for item in record["ignored_files"]} | set(record["ingested_files"])
    assert listed == {f"{D}/{name}" for name in RAW_FILES} | {f"{D}/dangling.jsonl"}
    assert record["input_rows"] == record["written_rows"] + record["quarantined_rows"] + record["duplicate_rows"]


@pytest.mark.slow
def test_every_raw_file_gets_a_log_line(ingested: dict) -> None:
    warnings = [r.getMessage() for r in ingested["log"] if r.levelno == logging.WARNING]
    for item in IGNORED:
        assert [m for m in warnings if item["file"] in m and item["reason"] in m], item
    infos = [r.getMessage() for r in ingested["log"] if r.levelno == logging.INFO]
    for name in ingested["record"]["ingested_files"]:
        assert [m for m in infos if name in m and "ingested" in m], name


@pytest.mark.slow
def test_upper_case_suffixes_are_ingested(ingested: dict) -> None:
    # A .GZ file is decompressed like a .gz one (Hadoop would have read its bytes as text).
    assert ingested["lake"] == sorted(["plain-1", "packed-1", "upper-1", "upper-2", "upper-gz-1", "upper-gz-2",
                                       "mixed-gz-1"])
    assert ingested["quarantine"] == []
    assert ingested["record"]["input_rows"] == 7


@pytest.mark.slow
def test_the_quality_gate_warns_about_ignored_files(ingested: dict) -> None:
    from quality.gate import run_quality_gate

    verdict = run_quality_gate(ingested["settings"], DAY)

    assert any(w.startswith("ingestion_reconciliation: expect_column_values_to_be_between(ignored_files) observed [8]")
               for w in verdict.failed_warnings), verdict.failed_warnings
    # A warning, not a stop: the day's read files are complete (the warehouse is not built here).
    assert not [c for c in verdict.failed_critical if c.startswith("ingestion_reconciliation")]
