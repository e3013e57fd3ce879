"""Ids the serving API cannot be asked about never reach the lake: an id holding a control
character (NUL, tab, DEL, NEL and the other C1 controls) or a Unicode line or paragraph
separator, or longer than the API's limit, is quarantined as ``invalid_id:<field>`` and counted
in the reconciliation; both line parsers (Java and Spark SQL) classify such lines alike.

One ingestion of a day holding every case backs the Spark tests (module-scoped fixture)."""

from __future__ import annotations

import json
from datetime import date

import pytest

DAY = date(2026, 11, 5)
LIMIT = 256


def line(event_id: str, *, ascii_only: bool = False, **fields: str) -> str:
    """A valid event with ``fields`` replaced; separators stay literal unless ``ascii_only``."""
    record = {"event_id": event_id, "event_time": "2026-11-05T10:00:00Z", "user_id": "u1",
              "item_id": "i1", "event_type": "view"} | fields
    return json.dumps(record, separators=(",", ":"), ensure_ascii=ascii_only)


# (line, the reason it must get); the event id names the case.
CONTROL = [
    (line("c-nul", user_id="u\x00x"), "invalid_id:user_id"),  # JSON escape \u0000
    (line("c-tab", item_id="i\tx"), "invalid_id:item_id"),
    (line("c-del", user_id="u\x7f"), "invalid_id:user_id"),  # literal DEL
    (line("c-nel", user_id="u\x85x"), "invalid_id:user_id"),  # literal NEL (U+0085)
    (line("c-csi", session_id="s\x9b"), "invalid_id:session_id"),  # a C1 control
    (line("c-esc", item_id="i\x1b[31m"), "invalid_id:item_id"),  # a terminal escape
    (line("c-id\x01"), "invalid_id:event_id"),
    # The first bad id in contract order names the reason.
    (line("c-both\x00", user_id="u\x00"), "invalid_id:event_id"),
]
SEPARATORS = [
    (line("s-line", user_id="u\u2028x"), "invalid_id:user_id"),
    (line("s-para", item_id="i\u2029x"), "invalid_id:item_id"),
    (line("s-escaped", ascii_only=True, user_id="u\u2028x"), "invalid_id:user_id"),
    (line("s-session", session_id="s\u2029x"), "invalid_id:session_id"),
]
TOO_LONG = [
    (line("l-user", user_id="u" * (LIMIT + 1)), "invalid_id:user_id"),
    (line("l-item", item_id="i" * (LIMIT + 1)), "invalid_id:item_id"),
    (line("l-session", session_id="s" * (LIMIT + 1)), "invalid_id:session_id"),
    (line("e" * (LIMIT + 1)), "invalid_id:event_id"),
    # Characters, not bytes: 257 emoji are over, 256 are not (below).
    (line("l-emoji", user_id="\U0001f600" * (LIMIT + 1)), "invalid_id:user_id"),
]
# Still valid: at the limit, beyond ASCII, a no-break space, and a blank session id (no session).
ACCEPTED = [
    line("ok-limit", user_id="u" * LIMIT, item_id="i" * LIMIT, session_id="s" * LIMIT),
    line("o" * LIMIT),
    line("ok-emoji", user_id="\U0001f600" * LIMIT),
    line("ok-accents", user_id="us\u00e9r\u00a0x", item_id="\u00e9t\u00e9"),
    line("ok-blank-session", session_id="\t"),
]
BAD = CONTROL + SEPARATORS + TOO_LONG


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reconciliation record, quarantine rows and lake rows of one day holding every case."""
    from ingest.ingest_day import ingest_arrival_day
    from ingest.line_parser import register
    from ingest.schema import LAKE_EVENT_SCHEMA, QUARANTINE_SCHEMA
    from core.settings import Settings

    settings = Settings(home=tmp_path_factory.mktemp("bad-ids"), spark_master="local[2]")
    folder = settings.raw_dir / DAY.isoformat()
    folder.mkdir(parents=True)
    lines = [text for text, _ in BAD] + ACCEPTED + [ACCEPTED[0]]  # one duplicate
    (folder / "events.jsonl").write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    record = ingest_arrival_day(settings, DAY, spark)
    quarantine = spark.read.schema(QUARANTINE_SCHEMA).parquet(
        str(settings.quarantine_dir / f"arrival_date={DAY}")).collect()
    lake = spark.read.schema(LAKE_EVENT_SCHEMA).parquet(str(settings.events_dir)).collect()
    return {
        # The Java parser wherever a JDK built it (as in production), else the SQL one.
        "parser": register(spark, settings),
        "settings": settings,
        "record": record,
        "quarantine": {row["raw_line"]: row["reason"] for row in quarantine},
        "lake": {row["event_id"]: row.asDict() for row in lake},
    }


def _event_id(text: str) -> str:
    return json.loads(text)["event_id"]


def _assert_quarantined(ingested: dict, cases: list[tuple[str, str]]) -> None:
    got = {_event_id(text)[:20]: ingested["quarantine"].get(text) for text, _ in cases}
    assert got == {_event_id(text)[:20]: reason for text, reason in cases}
    assert not {_event_id(text) for text, _ in cases} & set(ingested["lake"])


@pytest.mark.slow
def test_ids_with_control_characters_are_quarantined(ingested: dict) -> None:
    _assert_quarantined(ingested, CONTROL)


@pytest.mark.slow
def test_ids_with_line_or_paragraph_separators_are_quarantined(ingested: dict) -> None:
    _assert_quarantined(ingested, SEPARATORS)


@pytest.mark.slow
def test_ids_longer_than_the_api_accepts_are_quarantined(ingested: dict) -> None:
    _assert_quarantined(ingested, TOO_LONG)
    lake = ingested["lake"]
    assert sorted(lake) == sorted(_event_id(text) for text in ACCEPTED)
    assert lake["ok-limit"]["user_id"] == "u" * LIMIT
    assert lake["ok-emoji"]["user_id"] == "\U0001f600" * LIMIT
    assert lake["ok-blank-session"]["session_id"] is None


@pytest.mark.slow
def test_bad_ids_are_counted_in_the_reconciliation(ingested: dict) -> None:
    record = ingested["record"]
    reasons: dict[str, int] = {}
    for _, reason in BAD:
        reasons[reason] = reasons.get(reason, 0) + 1
    assert record["quarantine_reasons"] == dict(sorted(reasons.items()))
    assert (record["input_rows"], record["written_rows"], record["quarantined_rows"], record["duplicate_rows"]) == (
        len(BAD) + len(ACCEPTED) + 1, len(ACCEPTED), len(BAD), 1)
    assert record["input_rows"] == record["written_rows"] + record["quarantined_rows"] + record["duplicate_rows"]


@pytest.mark.slow
def test_the_other_line_parser_quarantines_bad_ids_alike(spark, ingested: dict) -> None:
    """The ingestion above used one parser; the other one classifies the same lines alike."""
    from ingest.classify import classify_lines
    from ingest.schema import MAX_LINE_BYTES

    if ingested["parser"] != "jvm":
        pytest.skip("the Java line parser is not available here (no JDK compiler); the SQL parser ran alone")
    lines = [text for text, _ in BAD] + ACCEPTED
    rows = [(text, str(n), len(text.encode()), None) for n, text in enumerate(lines)]
    frame = spark.createDataFrame(rows, "raw_line string, source_file string, line_bytes int, preset_reason string")
    classified = classify_lines(frame, ingested["settings"], DAY, MAX_LINE_BYTES, "sql").collect()
    got = [row["reason"] for row in sorted(classified, key=lambda row: int(row["source_file"]))]
    assert got == [reason for _, reason in BAD] + [None] * len(ACCEPTED)


def test_the_id_limit_agrees_with_the_serving_api() -> None:
    from ingest.ids import MAX_ID_LENGTH
    from serving.app import MAX_USER_ID_LENGTH

    assert MAX_ID_LENGTH == MAX_USER_ID_LENGTH == LIMIT


def test_importers_predict_the_invalid_id_reason() -> None:
    from ingest.importers.canonical import EventIds, event_line

    def reason(**ids: str) -> str | None:
        fields = {"user_id": "u1", "item_id": "i1"} | ids
        return event_line(EventIds("test"), time_ms=0, event_type="view", **fields).reason

    assert reason() is None
    assert reason(user_id="u\x00") == "invalid_id:user_id"
    assert reason(item_id="i\u2028") == "invalid_id:item_id"
    assert reason(session_id="s" * (LIMIT + 1)) == "invalid_id:session_id"
    assert reason(user_id="u" * LIMIT, session_id="\t") is None
