"""Late events land in their event date's partition, and each run says which event dates it changed."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
from pyspark.sql import SparkSession

from ingest.ingest_day import affected_event_dates, ingest_arrival_day
from core.settings import Settings
from tests.ingest.test_ingest_day import event, write_day

FIRST, SECOND = date(2026, 11, 5), date(2026, 11, 6)


def visible(settings: Settings, arrival: date | None = None) -> list[tuple]:
    """(event_id, item_id, event_date, arrival_date) as a reader of the lake's glob sees them."""
    where = f"where arrival_date = '{arrival}'" if arrival else ""
    return sorted(duckdb.sql(
        f"select event_id, item_id, event_date, arrival_date from read_parquet("
        f"'{settings.events_dir}/*/*/*.parquet', hive_partitioning = true) {where}"
    ).fetchall())


def files_of(settings: Settings, arrival: date) -> dict[str, bytes]:
    return {str(path.relative_to(settings.events_dir)): path.read_bytes()
            for path in settings.events_dir.glob(f"event_date=*/arrival_date={arrival}/*.parquet")}


@pytest.mark.slow
def test_late_events_and_the_dates_each_run_changed(spark: SparkSession, settings: Settings) -> None:
    write_day(settings, FIRST, {"e.jsonl": [
        event("a1", "2026-11-05T08:00:00Z"),
        event("a2", "2026-11-02T08:00:00Z"),  # three days late
    ]})
    write_day(settings, SECOND, {"e.jsonl.gz": [
        event("b1", "2026-11-06T09:00:00Z"),
        event("b2", "2026-11-05T23:59:59.999Z"),  # one day late, the last instant of its date
        event("b3", "2026-11-03T10:00:00Z", item_id="i3"),
        event("b4", "2026-11-01T10:00:00Z"),
    ]})
    assert ingest_arrival_day(settings, FIRST, spark)["affected_event_dates"] == ["2026-11-02", "2026-11-05"]
    first_files = files_of(settings, FIRST)

    result = ingest_arrival_day(settings, SECOND, spark)
    assert result["event_dates"] == result["affected_event_dates"] == [
        "2026-11-01", "2026-11-03", "2026-11-05", "2026-11-06"]
    assert affected_event_dates(settings, SECOND) == [
        date(2026, 11, 1), date(2026, 11, 3), date(2026, 11, 5), date(2026, 11, 6)]
    # Each late event sits under its own event date, next to other arrival days' rows of that date.
    assert visible(settings, SECOND) == [
        ("b1", "i1", date(2026, 11, 6), SECOND),
        ("b2", "i1", date(2026, 11, 5), SECOND),
        ("b3", "i3", date(2026, 11, 3), SECOND),
        ("b4", "i1", date(2026, 11, 1), SECOND),
    ]
    assert {p.name for p in (settings.events_dir / "event_date=2026-11-05").iterdir()} == {
        "arrival_date=2026-11-05", "arrival_date=2026-11-06"}

    # Same input again: the same lake, and nothing for downstream to recompute.
    lake = visible(settings)
    assert ingest_arrival_day(settings, SECOND, spark)["affected_event_dates"] == []
    assert visible(settings) == lake

    # A corrected re-delivery: b4 withdrawn (its date loses its only row), b3 changed, b5 new on a
    # fourth date, b1 and b2 as before.
    write_day(settings, SECOND, {"e.jsonl.gz": [
        event("b1", "2026-11-06T09:00:00Z"),
        event("b2", "2026-11-05T23:59:59.999Z"),
        event("b3", "2026-11-03T10:00:00Z", item_id="i4"),
        event("b5", "2026-11-04T10:00:00Z"),
    ]})
    result = ingest_arrival_day(settings, SECOND, spark)
    assert result["event_dates"] == ["2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]
    assert result["affected_event_dates"] == ["2026-11-01", "2026-11-03", "2026-11-04"]
    assert affected_event_dates(settings, SECOND) == [date(2026, 11, 1), date(2026, 11, 3), date(2026, 11, 4)]
    assert visible(settings, SECOND) == [
        ("b1", "i1", date(2026, 11, 6), SECOND),
        ("b2", "i1", date(2026, 11, 5), SECOND),
        ("b3", "i4", date(2026, 11, 3), SECOND),
        ("b5", "i1", date(2026, 11, 4), SECOND),
    ]
    assert not (settings.events_dir / "event_date=2026-11-01").exists()
    # The other arrival day's files are untouched, byte for byte.
    assert files_of(settings, FIRST) == first_files


def test_affected_dates_of_a_day_never_ingested_name_the_missing_record(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="2026-11-05.json"):
        affected_event_dates(settings, FIRST)
