"""The Spark ingestion job on hand-written and generated arrival days."""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from ingest import staging
from ingest.generator import generate_logs
from ingest.ingest_day import MissingArrivalDay, affected_event_dates, ingest_arrival_day, main
from ingest.schema import LAKE_EVENT_SCHEMA, QUARANTINE_SCHEMA
from core.settings import Settings

DAY = date(2026, 11, 5)


def event(event_id: str, event_time: str = "2026-11-05T10:00:00.123Z", **fields) -> str:
    record = {"event_id": event_id, "event_time": event_time, "user_id": "u1", "item_id": "i1",
              "event_type": "view"}
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...}, separators=(",", ":"))


def write_day(settings: Settings, day: date, files: dict[str, list[str | bytes]]) -> Path:
    folder = settings.raw_dir / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        payload = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
        (folder / name).write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)
    return folder


def cut_gzip(lines: list[str], keep: float) -> tuple[bytes, list[str], str]:
    """A gzip file of ``lines`` cut after ``keep`` of its bytes, the complete lines still in it
    and the text of the cut line (what zlib decompresses before the data runs out)."""
    packed = gzip.compress("".join(line + "\n" for line in lines).encode())
    cut = packed[: int(len(packed) * keep)]
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    *complete, partial = readable.split(b"\n")
    assert complete and partial, "cut inside a line, after at least one complete line"
    return cut, [line.decode() for line in complete], partial.decode()


def as_collected(*utc_fields: int) -> datetime:
    """A UTC instant the way PySpark's collect() hands it back: naive, in the local zone."""
    return datetime(*utc_fields, tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


def lake_rows(spark: SparkSession, settings: Settings) -> list[tuple]:
    frame = spark.read.schema(LAKE_EVENT_SCHEMA).parquet(str(settings.events_dir))
    return sorted(tuple(row) for row in frame.collect())


def quarantine(spark: SparkSession, settings: Settings, day: date) -> list[tuple[str, str, str]]:
    path = settings.quarantine_dir / f"arrival_date={day.isoformat()}"
    return sorted(tuple(row) for row in spark.read.schema(QUARANTINE_SCHEMA).parquet(str(path)).collect())


# One line per quarantine reason (several for the subtle ones), with the reason it must get.
REJECTED = [
    ("", "empty_line"),
    ("   ", "empty_line"),
    ('{"event_id":"b1","event_time":', "unparseable"),
    ("not json at all", "unparseable"),
    ("[1,2]", "unparseable"),
    ("null", "unparseable"),
    (event("b2") + " trailing", "unparseable"),
    # A lost newline: two events glued together must not silently become one.
    (event("b3") + event("b4"), "unparseable"),
    # More after the object than whitespace: the parser would stop at the object's end.
    (event("b8") + "}", "unparseable"),
    (event("b9") + "," + event("b10"), "unparseable"),
    (event("b11") + "]," + event("b12"), "unparseable"),
    (event("b13") + "]", "unparseable"),
    ("{'event_id':'b5'}", "unparseable"),
    ('{"event_id":"b6","event_id":"b7","event_time":"2026-11-05T10:00:00Z","user_id":"u","item_id":"i",'
     '"event_type":"view"}', "unparseable"),
    (event(...), "missing_field:event_id"),
    (event("c1", item_id=None), "missing_field:item_id"),
    (event("c2", user_id="  "), "missing_field:user_id"),
    # The first missing field in contract order is named.
    (event("c3", event_time=..., item_id=...), "missing_field:event_time"),
    (event("c4", event_type=...), "missing_field:event_type"),
    (event("d1", event_time="2026/11/05 10:00:00"), "bad_type:event_time"),
    (event("d2", event_time="2026-11-05T10:00:00"), "bad_type:event_time"),  # no zone
    (event("d3", event_time="2026"), "bad_type:event_time"),
    (event("d4", event_time="2026-13-45T99:00:00Z"), "bad_type:event_time"),
    (event("d5", event_time=1793786400000), "bad_type:event_time"),
    (event("d6", user_id=12), "bad_type:user_id"),
    (event("d7", extra="free text"), "bad_type:extra"),
    (event("d8", session_id={"id": 1}), "bad_type:session_id"),
    (event("e1", event_type="share"), "unknown_event_type"),
    (event("e2", event_type="VIEW"), "unknown_event_type"),
    # Latest accepted: end of the arrival day + 60 minutes of skew.
    (event("f1", event_time="2026-11-06T01:00:00.001Z"), "future_timestamp"),
    # Earliest accepted: the arrival day's start - 30 days.
    (event("g1", event_time="2026-10-05T23:59:59Z"), "too_old_timestamp"),
]
LONG_LINE = '{"event_id":"h1","padding":"' + "x" * 20_000  # unterminated, longer than kept

ACCEPTED = [
    event("a1", session_id="s1", extra={"price": 9.5, "tags": ["x"]}),
    # +02:00 makes this 2026-11-04T23:30:00Z: the event date is the UTC one.
    event("a2", event_time="2026-11-05T01:30:00+02:00", session_id=""),
    event("a3", event_time="2026-11-03T12:00:00Z"),  # late: two days before arrival
    event("a4", event_time="2026-11-06T01:00:00Z", extra=None),  # exactly the latest accepted
    event("a5", event_time="2026-10-06T00:00:00Z"),  # exactly the earliest accepted
    event("a6", item_id="i2"),
    event("a6", item_id="i9"),  # same id, other content: the copy first by time, then by the other columns, is kept
    " " + event("a13") + " \t ",  # whitespace around the object is not "more after it"
]


# Bytes that are not UTF-8: Spark would read them as U+FFFD and put altered ids into the lake.
BAD_ENCODING = [
    event("k1").encode().replace(b'"u1"', b'"u\xe91"'),  # Latin-1 e-acute
    b"\xc0\xaf" + event("k2").encode(),  # an overlong encoding of "/"
    event("k3").encode().replace(b'"i1"', b'"\xed\xa0\x80"'),  # a lone surrogate
]
# Valid UTF-8 beyond ASCII is kept byte for byte.
NON_ASCII = event("a8").replace('"u1"', '"us\u00e9r-\U0001f600"')
# Over the default line limit (1 MiB): never parsed nor held whole, quarantined with a prefix.
HUGE_LINE = '{"event_id":"h2","padding":"' + "y" * (5 << 20) + '"}'


@pytest.mark.slow
def test_every_line_goes_to_exactly_one_place(spark: SparkSession, settings: Settings) -> None:
    folder = write_day(settings, DAY, {
        "part-a.jsonl": [line for line, _ in REJECTED] + [LONG_LINE] + ACCEPTED + [ACCEPTED[0]]
                        + BAD_ENCODING + [NON_ASCII],
        # Another file, gzip, re-sending a1 and carrying one new event.
        "part-b.jsonl.gz": [ACCEPTED[0], event("a7", event_type="purchase", extra={"price": 3})],
        "part-c.jsonl": [],  # zero bytes
        "part-e.jsonl": [event("a9"), HUGE_LINE, event("a10")],
        "notes.txt": ["not a log file"],
        ".part-d.jsonl": [event("z1")],  # hidden: an upload in progress
    })
    # An upload cut short: its complete lines are ingested, the cut line and the lost rest are
    # one quarantine row.
    cut, complete, partial = cut_gzip([event(f"t{n:03d}") for n in range(300)], keep=0.6)
    (folder / "part-f.jsonl.gz").write_bytes(cut)
    # Windows line ends and a byte-order mark: the same events as with LF.
    (folder / "part-g.jsonl").write_bytes(
        b"\xef\xbb\xbf" + event("a11").encode() + b"\r\n" + event("a12").encode() + b"\r\n")

    result = ingest_arrival_day(settings, DAY, spark)

    expected_reasons: dict[str, int] = {"bad_encoding": 3, "line_too_long": 1, "truncated_file": 1}
    for _, reason in REJECTED + [(LONG_LINE, "unparseable")]:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    event_dates = ["2026-10-06", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]
    quarantined = len(REJECTED) + 1 + len(BAD_ENCODING) + 1 + 1
    written = 13 + len(complete)  # a1-a13 and the truncated file's complete lines
    assert result == {
        "arrival_date": "2026-11-05",
        "input_rows": (len(REJECTED) + 1 + len(ACCEPTED) + 1 + len(BAD_ENCODING) + 1  # part-a
                       + 2 + 3 + (len(complete) + 1) + 2),  # part-b, e, f, g
        "written_rows": written,
        "quarantined_rows": quarantined,
        "duplicate_rows": 3,  # a1 twice, a6 once
        "quarantine_reasons": dict(sorted(expected_reasons.items())),
        "event_dates": event_dates,
        "affected_event_dates": event_dates,  # a first run changes every date it writes
        "ingested_files": [f"2026-11-05/part-{x}" for x in
                           ("a.jsonl", "b.jsonl.gz", "c.jsonl", "e.jsonl", "f.jsonl.gz", "g.jsonl")],
        # Not read, but named with the reason (tests/reliability/test_raw_files.py has the rest).
        "ignored_files": [
            {"file": "2026-11-05/.part-d.jsonl", "reason": "hidden or temporary file (name starts with '.' or '_')"},
            {"file": "2026-11-05/notes.txt", "reason": "not a .jsonl or .jsonl.gz file"},
        ],
    }
    assert result["input_rows"] == result["written_rows"] + result["quarantined_rows"] + result["duplicate_rows"]
    on_disk = json.loads((settings.reconciliation_dir / "2026-11-05.json").read_text())
    assert on_disk == result
    assert affected_event_dates(settings, DAY) == [date.fromisoformat(d) for d in event_dates]

    rejected = quarantine(spark, settings, DAY)
    got = sorted((raw_line, reason, source) for raw_line, reason, source in rejected)
    a = "2026-11-05/part-a.jsonl"
    want = sorted(
        [(line, reason, a) for line, reason in REJECTED]
        + [(LONG_LINE[:10_000], "unparseable", a)]
        + [(line.decode("utf-8", errors="replace"), "bad_encoding", a) for line in BAD_ENCODING]
        + [(HUGE_LINE[:10_000], "line_too_long", "2026-11-05/part-e.jsonl"),
           (partial, "truncated_file", "2026-11-05/part-f.jsonl.gz")]
    )
    assert got == want

    rows = {row["event_id"]: row for row in
            spark.read.schema(LAKE_EVENT_SCHEMA).parquet(str(settings.events_dir)).collect()}
    assert sorted(rows) == sorted([f"a{n}" for n in range(1, 14)] + [f"t{n:03d}" for n in range(len(complete))])
    assert rows["a1"]["event_time"] == as_collected(2026, 11, 5, 10, 0, 0, 123000)
    assert rows["a1"]["session_id"] == "s1"
    assert json.loads(rows["a1"]["extra"]) == {"price": 9.5, "tags": ["x"]}
    assert rows["a2"]["session_id"] is None and rows["a2"]["extra"] is None
    assert rows["a2"]["event_date"] == date(2026, 11, 4)
    assert rows["a2"]["event_time"] == as_collected(2026, 11, 4, 23, 30)
    assert rows["a3"]["event_date"] == date(2026, 11, 3)
    assert rows["a6"]["item_id"] == "i2"
    assert rows["a8"]["user_id"] == "us\u00e9r-\U0001f600"
    assert not any("\ufffd" in (row["user_id"] + row["item_id"] + row["event_id"]) for row in rows.values())
    assert {row["arrival_date"] for row in rows.values()} == {DAY}
    # The late event sits in its event date's partition, under this arrival day.
    assert list((settings.events_dir / "event_date=2026-11-03" / "arrival_date=2026-11-05").glob("*.parquet"))


@pytest.mark.slow
def test_the_line_limit_is_configurable_and_every_long_line_is_counted(
    spark: SparkSession, settings: Settings
) -> None:
    limit = 1_000

    def sized(event_id: str, size: int) -> str:
        line = event(event_id, extra={"pad": ""})
        return line.replace('"pad":""', '"pad":"' + "p" * (size - len(line)) + '"')

    lines = [sized(f"s{size}", size) for size in (limit - 1, limit, limit + 1, limit + 2, limit + 3, 5_000)]
    assert [len(line) for line in lines] == [999, 1000, 1001, 1002, 1003, 5000]
    huge = '{"event_id":"h3","padding":"' + "z" * (5 << 20) + '"}'
    write_day(settings, DAY, {
        "plain.jsonl": lines,
        "packed.jsonl.gz": [event("g1"), huge, event("g2")],
    })

    result = ingest_arrival_day(settings, DAY, spark, max_line_bytes=limit)

    assert (result["input_rows"], result["written_rows"], result["quarantined_rows"]) == (9, 4, 5)
    assert result["quarantine_reasons"] == {"line_too_long": 5}
    assert sorted(row[0] for row in lake_rows(spark, settings)) == ["g1", "g2", "s1000", "s999"]
    rejected = sorted((raw[:40], len(raw), reason, source) for raw, reason, source in quarantine(spark, settings, DAY))
    assert rejected == sorted(
        [(line[:40], len(line), "line_too_long", "2026-11-05/plain.jsonl") for line in lines[2:]]
        + [(huge[:40], 10_000, "line_too_long", "2026-11-05/packed.jsonl.gz")]
    )


@pytest.mark.slow
def test_bad_compressed_files_keep_their_readable_lines(spark: SparkSession, settings: Settings) -> None:
    folder = write_day(settings, DAY, {"good.jsonl.gz": [event("g1")]})
    cut, complete, partial = cut_gzip([event(f"t{n:03d}") for n in range(500)], keep=0.3)
    (folder / "cut.jsonl.gz").write_bytes(cut)
    (folder / "header-only.jsonl.gz").write_bytes(gzip.compress(b"")[:6])
    (folder / "not-gzip.jsonl.gz").write_bytes(event("n1").encode() + b"\n")

    result = ingest_arrival_day(settings, DAY, spark)

    assert result["quarantine_reasons"] == {"corrupt_file": 1, "truncated_file": 2}
    assert result["written_rows"] == 1 + len(complete)
    assert result["input_rows"] == 1 + len(complete) + 3 == result["written_rows"] + result["quarantined_rows"]
    assert quarantine(spark, settings, DAY) == sorted([
        ("", "corrupt_file", "2026-11-05/not-gzip.jsonl.gz"),
        (partial, "truncated_file", "2026-11-05/cut.jsonl.gz"),
        ("", "truncated_file", "2026-11-05/header-only.jsonl.gz"),
    ])
    assert sorted(row[0] for row in lake_rows(spark, settings)) == ["g1"] + [f"t{n:03d}" for n in range(len(complete))]
    # Nothing of the salvage is left where a reader or the next run could pick it up.
    assert not (settings.lake_dir / "_staging").exists() or not any((settings.lake_dir / "_staging").iterdir())


@pytest.mark.slow
def test_cross_day_duplicates_and_reruns_replace_only_their_own_partitions(
    spark: SparkSession, settings: Settings
) -> None:
    first, second = DAY, DAY + timedelta(days=1)
    write_day(settings, first, {"events.jsonl": [event("a1"), event("a2", event_time="2026-11-04T09:00:00Z")]})
    write_day(settings, second, {"events.jsonl.gz": [
        event("a1"),  # re-sent a day later
        event("b1", event_time="2026-11-06T08:00:00Z"),
        event("b2", event_time="2026-11-02T08:00:00Z"),  # late
    ]})

    assert ingest_arrival_day(settings, first, spark)["written_rows"] == 2
    result = ingest_arrival_day(settings, second, spark)
    assert (result["written_rows"], result["duplicate_rows"], result["input_rows"]) == (2, 1, 3)
    assert result["event_dates"] == ["2026-11-02", "2026-11-06"]
    lake = lake_rows(spark, settings)
    assert [row[0] for row in lake] == ["a1", "a2", "b1", "b2"]

    # Re-running either day, in any order, gives the same lake.
    ingest_arrival_day(settings, first, spark)
    assert lake_rows(spark, settings) == lake
    # Same input, same rows: the re-run reports no event date as changed.
    assert ingest_arrival_day(settings, second, spark) == result | {"affected_event_dates": []}
    assert lake_rows(spark, settings) == lake

    # The second day's input changes: its stale sub-partition goes, the first day's stay.
    write_day(settings, second, {"events.jsonl.gz": [event("b1", event_time="2026-11-06T08:00:00Z")]})
    rerun = ingest_arrival_day(settings, second, spark)
    assert rerun["event_dates"] == ["2026-11-06"]
    assert rerun["affected_event_dates"] == ["2026-11-02"]  # its rows of that date are gone
    assert [row[0] for row in lake_rows(spark, settings)] == ["a1", "a2", "b1"]
    assert not (settings.events_dir / "event_date=2026-11-02").exists()
    assert (settings.events_dir / "event_date=2026-11-04" / "arrival_date=2026-11-05").is_dir()


@pytest.mark.slow
def test_a_resend_of_a_rejected_days_event_is_kept_not_dropped_as_a_duplicate(
    spark: SparkSession, settings: Settings
) -> None:
    """A day the quality gate rejected stays in the lake but out of the tables; an event it held
    that a later day re-sends must not be dropped as a cross-day duplicate of it, or the event
    is lost for good while the day stays rejected (issue 19)."""
    first, second = DAY, DAY + timedelta(days=1)
    write_day(settings, first, {"events.jsonl": [event("a1"), event("a2")]})
    write_day(settings, second, {"events.jsonl": [event("a1"), event("b1")]})  # a1 re-sent
    ingest_arrival_day(settings, first, spark)

    result = ingest_arrival_day(settings, second, spark, excluded_arrival_dates=[first.isoformat()])

    assert (result["written_rows"], result["duplicate_rows"]) == (2, 0)
    second_rows = [row[0] for row in lake_rows(spark, settings) if row[-1] == second]
    assert sorted(second_rows) == ["a1", "b1"]


def test_missing_arrival_folder_raises(settings: Settings) -> None:
    with pytest.raises(MissingArrivalDay) as caught:
        ingest_arrival_day(settings, DAY)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(settings.raw_dir / "2026-11-05") in str(caught.value)


@pytest.mark.slow
def test_empty_folder_and_empty_files_reconcile_to_zero(spark: SparkSession, settings: Settings) -> None:
    zero = {"arrival_date": "2026-11-05", "input_rows": 0, "written_rows": 0, "quarantined_rows": 0,
            "duplicate_rows": 0, "quarantine_reasons": {}, "event_dates": [], "affected_event_dates": [],
            "ingested_files": [], "ignored_files": []}
    (settings.raw_dir / "2026-11-05").mkdir(parents=True)
    assert ingest_arrival_day(settings, DAY, spark) == zero
    write_day(settings, DAY, {"a.jsonl": [], "b.jsonl.gz": []})
    (settings.raw_dir / "2026-11-05" / "c.jsonl.gz").write_bytes(b"")
    zero["ingested_files"] = ["2026-11-05/a.jsonl", "2026-11-05/b.jsonl.gz", "2026-11-05/c.jsonl.gz"]
    assert ingest_arrival_day(settings, DAY, spark) == zero
    assert json.loads((settings.reconciliation_dir / "2026-11-05.json").read_text()) == zero
    assert quarantine(spark, settings, DAY) == []


@pytest.mark.slow
def test_a_write_that_lost_events_is_never_published(
    spark: SparkSession, settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_day(settings, DAY, {"part-a.jsonl": [event(f"e{n}", item_id=f"i{n}") for n in range(20)]})
    real_write = staging.write_events

    # What a faulty writer or file system could do: a file of the write goes missing.
    def damaging_write(events, folder: Path) -> None:
        real_write(events, folder)
        sorted(folder.glob("event_date=*/*.parquet"))[0].unlink()

    monkeypatch.setattr(staging, "write_events", damaging_write)
    with pytest.raises(staging.ReconciliationError, match="nothing was published"):
        ingest_arrival_day(settings, DAY, spark)
    assert not list(settings.events_dir.glob("*/*/*.parquet"))
    assert not (settings.reconciliation_dir / "2026-11-05.json").exists()


@pytest.mark.slow
def test_generated_days_reconcile_with_the_generator_summary(spark: SparkSession, settings: Settings) -> None:
    start = date(2026, 11, 1)
    summary = generate_logs(settings.raw_dir, start, days=3, n_users=120, n_items=60, seed=4,
                            defect_rate=0.05, corrupt_dates=[start + timedelta(days=2)])
    for day in (start + timedelta(days=k) for k in range(3)):
        planted = summary["days"][day.isoformat()]
        result = ingest_arrival_day(settings, day, spark)
        assert result["input_rows"] == planted["lines"]
        assert result["written_rows"] == planted["events"]
        assert result["duplicate_rows"] == planted["duplicate_lines"]
        assert result["quarantine_reasons"] == planted["quarantine_reasons"]
    events = spark.read.schema(LAKE_EVENT_SCHEMA).parquet(str(settings.events_dir))
    assert events.count() == summary["events"] == events.select("event_id").distinct().count()


@pytest.mark.slow
def test_cli_ingests_a_range_of_days(
    spark: SparkSession, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for offset in range(2):
        write_day(settings, DAY + timedelta(days=offset), {"e.jsonl": [event(f"x{offset}")]})
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    assert main(["--date", "2026-11-05", "--to", "2026-11-06"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["arrival_date"], r["written_rows"]) for r in printed] == [("2026-11-05", 1), ("2026-11-06", 1)]
    # The module's session was running already, so the CLI left it running.
    assert spark.range(1).count() == 1

