"""Importers of public logs: canonical lines, arrival-day split, determinism, nothing lost.

Every format is fed a small file written here, with the rows real dumps contain (anonymous
users, fractional seconds, events across midnight, unknown behaviours, multi-line CSV fields,
broken rows). The written lines are checked against the raw-event contract with a checker that
mirrors ingestion's rules independently of the importers' own code; one slow test runs the real
Spark ingestion on an import and compares its quarantine with the import summary.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from ingest.importers import IMPORTERS, SourceFormatError, import_log
from ingest.importers.__main__ import main as cli_main
from ingest.importers.amazon_m2 import SESSIONS_PER_DAY, parse_item_list, session_start_ms
from core.names import EVENT_TYPES
from core.settings import Settings

ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REQUIRED = ("event_id", "event_time", "user_id", "item_id", "event_type")
# A content-derived event id (``canonical.EventIds``): ``<format>:<digest>[:<repeat>]``.
EVENT_ID = re.compile(r"^([a-z0-9_]+):[0-9a-f]{32}(?::[1-9]\d*)?$")
# Formats whose source row holds several events (a session); every other row is one line.
MULTI_EVENT_ROWS = {"otto", "amazon_m2", "amazon_s3rec"}

# ---- fixtures: one small source file per format, with the tricky rows ----

YOOCHOOSE_TSV = (
    "SessionId\tItemId\tTime\n"
    "1\t214716935\t1396437466.94\n"
    "1\t214832672\t1396438212.318\n"
    "\n"
    # 0.9995 s rounds (half-even) to the next whole second: the event is on the next day.
    "2\t214701242\t1396483199.9995\n"
    "2\t214826623\tnot-a-time\n"
    "3\t\t1396483300\n"
    "4\t214\t1396483300\tsurplus\n"
)
YOOCHOOSE_CLICKS = (
    "1,2014-04-07T10:51:09.277Z,214536502,0\n"
    "1,2014-04-07T10:54:09.868Z,214536500,S\n"
    "2,2014-04-07T23:59:59.999Z,214577561,2053\n"
    "2,2014-04-08T00:00:00.000Z,214662742,0\n"
)
OTTO = (
    '{"session":0,"events":[{"aid":11,"ts":1659304800025,"type":"clicks"},'
    '{"aid":12,"ts":1659304904511,"type":"carts"},{"aid":13,"ts":1659391304904,"type":"orders"}]}\n'
    '{"session":1,"events":[{"aid":11,"ts":1659304900000,"type":"wishlist"},'
    '{"aid":14,"ts":"later","type":"clicks"}]}\n'
    '{"session":3,"events":[{"aid":16,"ts":NaN,"type":"clicks"}]}\n'
    '{"session":2,"events":[{"aid":15,"ts":16593\n'
)
DIGINETICA = (
    "session_id;user_id;item_id;timeframe;eventdate\n"
    "1;NA;81766;526309;2016-05-09\n"
    "1;NA;31331;1031018;2016-05-09\n"
    "2;5;32118;86399999;2016-05-09\n"
    "2;5;9654;86400000;2016-05-09\n"
    "5;NA;100;5;2016-05-10\n"
    # Session 8 logs in part-way; session 10 is shared by two users.
    "8;NA;103;5;2016-05-10\n"
    "8;9;104;6;2016-05-10\n"
    "10;11;105;5;2016-05-10\n"
    "10;12;106;6;2016-05-10\n"
    "6;NA;101;5;2016-13-45\n"
    "7;NA;102;5\n"
)
TAOBAO = (
    "1,100,9,pv,1511544070\n"
    "1,101,9,fav,1511544071\n"
    "1,102,9,cart,1511544072\n"
    "1,103,9,buy,1511544073\n"
    "2,104,9,share,1511544074\n"
    "2,105,9,pv,-1\n"
)
MOVIELENS_DAT = (
    "1::1193::5::978300760\n"
    "1::661::3::978302109\n"
    "2::3068::x::978299000\n"
)
MOVIELENS_CSV = (
    "userId,movieId,rating,timestamp\n"
    "1,31,2.5,1260759144\n"
    "1,1029,3.0,1260759179\n"
)
RETAILROCKET = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    "1433221332117,257597,view,355908,\n"
    "1433224214164,992329,view,248676,\n"
    "1433221999827,111016,addtocart,318333,\n"
    "1433222276276,483717,transaction,253185,4000\n"
    # "click" is a canonical type, but not a Retailrocket one: it must not slip through.
    "1433222276276,483717,click,253185,\n"
)
AMAZON_M2 = (
    "prev_items,next_item,locale\n"
    "\"['B09W9FND7K' 'B09JSPLN1M']\",B09M7GY217,DE\n"
    "\"['B076THCGSG' 'B007MO8IME' 'B08MF65MLV'\n"
    " 'B001B4TKA0']\",B001B4THSA,JP\n"
    "\"['B0' broken\",B1,UK\n"
)
AMAZON_S3REC = (
    "1 1 2 3\n"
    "2 4 2\n"
    "3\n"  # a user without items
)

SOURCES = {
    "yoochoose": ("yoochoose-clicks-sample.txt", YOOCHOOSE_TSV),
    "otto": ("otto-sample.jsonl", OTTO),
    "diginetica": ("train-item-views.csv", DIGINETICA),
    "taobao": ("UserBehavior.csv", TAOBAO),
    "movielens": ("ratings.dat", MOVIELENS_DAT),
    "retailrocket": ("events.csv", RETAILROCKET),
    "amazon_m2": ("sessions_train.csv", AMAZON_M2),
    "amazon_s3rec": ("Beauty.txt", AMAZON_S3REC),
}

# Per format: the canonical event types written, and the rows the quarantine must receive.
EXPECTED = {
    "yoochoose": {"types": {"click": 3}, "rejected": {"missing_field:event_time": 1,
                                                      "missing_field:item_id": 1, "unparseable": 1}},
    "otto": {"types": {"click": 1, "add_to_cart": 1, "purchase": 1},
             "rejected": {"unknown_event_type": 1, "missing_field:event_time": 1, "unparseable": 2}},
    "diginetica": {"types": {"view": 9}, "rejected": {"missing_field:event_time": 1, "unparseable": 1}},
    "taobao": {"types": {"view": 1, "click": 1, "add_to_cart": 1, "purchase": 1},
               "rejected": {"unknown_event_type": 1, "missing_field:event_time": 1}},
    "movielens": {"types": {"view": 2}, "rejected": {"unparseable": 1}},
    "retailrocket": {"types": {"view": 2, "add_to_cart": 1, "purchase": 1},
                     "rejected": {"unknown_event_type": 1}},
    "amazon_m2": {"types": {"view": 8}, "rejected": {"unparseable": 1}},
    "amazon_s3rec": {"types": {"view": 5}, "rejected": {"unparseable": 1}},
}


def write_source(folder: Path, format_name: str) -> Path:
    name, text = SOURCES[format_name]
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- a checker mirroring ingestion's rules (docs/architecture.md), independent of the importers ----


def ingestion_reason(line: str) -> str | None:
    """The quarantine reason ingestion gives ``line``; None for a valid event."""
    try:
        record = json.loads(line)
    except ValueError:
        return "unparseable"
    if not isinstance(record, dict):
        return "unparseable"
    for name in REQUIRED:
        if record.get(name) is None or (isinstance(record[name], str) and not record[name].strip()):
            return f"missing_field:{name}"
    for name in (*REQUIRED, "session_id"):
        if name in record and not isinstance(record[name], str):
            return f"bad_type:{name}"
    if not ISO_TIME.match(record["event_time"]):
        return "bad_type:event_time"
    if "extra" in record and not isinstance(record["extra"], dict):
        return "bad_type:extra"
    if record["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    return None


def read_day_files(raw_dir: Path, format_name: str) -> dict[str, list[str]]:
    days = {}
    for path in sorted(raw_dir.glob(f"*/{format_name}-00000.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            days[path.parent.name] = handle.read().split("\n")[:-1]
    return days


def events_by_day(raw_dir: Path, format_name: str) -> dict[str, list[dict]]:
    return {
        day: [json.loads(line) for line in lines if ingestion_reason(line) is None]
        for day, lines in read_day_files(raw_dir, format_name).items()
    }


def all_events(raw_dir: Path, format_name: str) -> list[dict]:
    return [event for events in events_by_day(raw_dir, format_name).values() for event in events]


def utc_date(event_time: str) -> str:
    return datetime.fromisoformat(event_time).astimezone(timezone.utc).date().isoformat()


def file_bytes(raw_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(raw_dir)): p.read_bytes() for p in sorted(raw_dir.rglob("*")) if p.is_file()}


@pytest.fixture(params=sorted(SOURCES))
def imported(request, tmp_path):
    format_name = request.param
    source = write_source(tmp_path, format_name)
    raw_dir = tmp_path / "raw"
    summary = import_log(format_name, source, raw_dir)
    return format_name, source, raw_dir, summary


# ---- every format ----


def test_registry_has_every_format():
    assert set(IMPORTERS) == set(SOURCES)


def test_lines_follow_the_canonical_contract(imported):
    format_name, source, raw_dir, summary = imported
    days = read_day_files(raw_dir, format_name)
    assert sorted(days) == summary["arrival_days"]
    ids = []
    for day, lines in days.items():
        for line in lines:
            if ingestion_reason(line) is not None:
                continue
            event = json.loads(line)
            assert set(event) <= {*REQUIRED, "session_id", "extra"}, event
            assert all(isinstance(event[k], str) and event[k] for k in REQUIRED), event
            assert ISO_TIME.match(event["event_time"]), event
            # The arrival day is the UTC date of the event time.
            assert utc_date(event["event_time"]) == day, event
            assert event["event_type"] in EVENT_TYPES
            assert EVENT_ID.match(event["event_id"]).group(1) == format_name, event
            ids.append(event["event_id"])
    assert len(ids) == len(set(ids)) == summary["events_written"]
    types = Counter(e["event_type"] for e in all_events(raw_dir, format_name))
    assert types == Counter(EXPECTED[format_name]["types"])


def test_unconvertible_rows_go_to_the_quarantine_with_their_reason(imported):
    format_name, _, raw_dir, summary = imported
    lines = [line for day_lines in read_day_files(raw_dir, format_name).values() for line in day_lines]
    reasons = Counter(reason for line in lines if (reason := ingestion_reason(line)) is not None)
    assert reasons == Counter(EXPECTED[format_name]["rejected"])
    assert summary["rejected_reasons"] == EXPECTED[format_name]["rejected"]
    assert summary["lines_written"] == len(lines) == summary["events_written"] + summary["rejected"]
    per_day = {day: Counter(c["rejected_reasons"]) for day, c in summary["days"].items()}
    for day, day_lines in read_day_files(raw_dir, format_name).items():
        assert Counter(r for line in day_lines if (r := ingestion_reason(line))) == per_day[day], day


def test_every_source_row_is_written(imported):
    format_name, source, raw_dir, summary = imported
    text = source.read_text(encoding="utf-8")
    lines = [line for day_lines in read_day_files(raw_dir, format_name).values() for line in day_lines]
    # Every source row (not the header, not a blank line, not a continuation line of a quoted
    # CSV field) is read, and becomes one line (or one per event of a session row).
    has_header = format_name in ("yoochoose", "diginetica", "retailrocket", "amazon_m2")
    candidates = {n for n, row in enumerate(text.split("\n"), start=1)
                  if row.strip() and not (has_header and n == 1) and not row.startswith(" ")}
    assert summary["rows_read"] == len(candidates)
    if format_name not in MULTI_EVENT_ROWS:
        assert len(lines) == len(candidates)
    # Every line has its own id: an event's, or an unparseable row's before its text.
    ids = [json.loads(line)["event_id"] if line.startswith("{") else line.split("\t")[0] for line in lines]
    assert len(set(ids)) == len(lines) and all(EVENT_ID.match(i) for i in ids)


def test_reimport_is_byte_identical_and_spilling_changes_nothing(imported, tmp_path):
    format_name, source, raw_dir, summary = imported
    first = file_bytes(raw_dir)
    again = import_log(format_name, source, raw_dir)
    assert file_bytes(raw_dir) == first
    assert again == summary
    # One line of buffer: every line goes through the spill files, and the bytes are the same.
    spilled_dir = tmp_path / "spilled"
    spilled = import_log(format_name, source, spilled_dir, max_buffered_lines=1)
    assert file_bytes(spilled_dir) == first
    assert {k: v for k, v in spilled.items() if k not in ("raw_dir", "days")} == {
        k: v for k, v in summary.items() if k not in ("raw_dir", "days")
    }
    assert not [p for p in spilled_dir.iterdir() if p.name.startswith(".")]  # no spill folder left


# ---- format specifics ----


def test_yoochoose_tsv_times_and_ids(tmp_path):
    raw_dir = tmp_path / "raw"
    import_log("yoochoose", write_source(tmp_path, "yoochoose"), raw_dir)
    days = events_by_day(raw_dir, "yoochoose")
    first = days["2014-04-02"][0]
    assert EVENT_ID.match(first.pop("event_id"))
    assert first == {
        "event_time": "2014-04-02T11:17:46.940Z",  # .94 s exactly, not .939
        "user_id": "1",
        "session_id": "1",
        "item_id": "214716935",
        "event_type": "click",
    }
    assert days["2014-04-02"][1]["event_time"] == "2014-04-02T11:30:12.318Z"
    # 1396483199.9995 s rounds to the next day's first millisecond.
    assert days["2014-04-03"][0]["event_time"] == "2014-04-03T00:00:00.000Z"
    # The row without a usable time goes to the previous row's day, its raw time kept in extra.
    rejected = [json.loads(line) for line in read_day_files(raw_dir, "yoochoose")["2014-04-03"]
                if ingestion_reason(line) == "missing_field:event_time"]
    assert rejected[0]["extra"] == {"source_time": "not-a-time"}
    assert rejected[0]["user_id"] == "2" and rejected[0]["item_id"] == "214826623"


def test_yoochoose_original_clicks_file(tmp_path):
    source = tmp_path / "yoochoose-clicks.dat"
    source.write_text(YOOCHOOSE_CLICKS, encoding="utf-8")
    summary = import_log("yoochoose", source, tmp_path / "raw")
    assert summary["rows_read"] == 4 and summary["rejected"] == 0
    days = events_by_day(tmp_path / "raw", "yoochoose")
    assert [len(days[d]) for d in sorted(days)] == [3, 1]
    assert days["2014-04-07"][2]["event_time"] == "2014-04-07T23:59:59.999Z"
    assert days["2014-04-08"][0]["event_time"] == "2014-04-08T00:00:00.000Z"
    assert [e["extra"]["category"] for e in days["2014-04-07"]] == ["0", "S", "2053"]


def test_columns_are_found_by_name_and_unmapped_ones_kept_in_extra(tmp_path):
    reordered = tmp_path / "clicks.tsv"
    reordered.write_text("SessionId\tTime\tItemId\tTimeO\n7\t1396437466\t214\t2014-04-02 11:17:46\n",
                         encoding="utf-8")
    import_log("yoochoose", reordered, tmp_path / "a")
    (event,) = all_events(tmp_path / "a", "yoochoose")
    assert (event["item_id"], event["session_id"]) == ("214", "7")
    assert event["extra"] == {"TimeO": "2014-04-02 11:17:46"}
    headerless = tmp_path / "headerless.tsv"
    headerless.write_text("7\t214\t1396437466\n", encoding="utf-8")
    import_log("yoochoose", headerless, tmp_path / "b")
    (event,) = all_events(tmp_path / "b", "yoochoose")
    assert (event["item_id"], event["event_time"]) == ("214", "2014-04-02T11:17:46.000Z")
    priced = tmp_path / "events.csv"
    priced.write_text("timestamp,visitorid,event,itemid,transactionid,price\n"
                      "1433221332117,257597,view,355908,,9.50\n", encoding="utf-8")
    import_log("retailrocket", priced, tmp_path / "c")
    (event,) = all_events(tmp_path / "c", "retailrocket")
    assert event["extra"] == {"price": "9.50"}


def test_gzip_sources_are_read_as_they_are(tmp_path):
    plain = write_source(tmp_path, "otto")
    packed = tmp_path / "otto-sample.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = import_log("otto", plain, tmp_path / "a")
    b = import_log("otto", packed, tmp_path / "b")
    assert a["days"].keys() == b["days"].keys() and a["events_written"] == b["events_written"] == 3


def test_otto_event_types_and_ids(tmp_path):
    raw_dir = tmp_path / "raw"
    import_log("otto", write_source(tmp_path, "otto"), raw_dir)
    events = sorted(all_events(raw_dir, "otto"), key=lambda e: e["event_time"])
    assert [(e["event_type"], e["item_id"], e["user_id"], e["session_id"]) for e in events] == [
        ("click", "11", "0", "0"),
        ("add_to_cart", "12", "0", "0"),
        ("purchase", "13", "0", "0"),
    ]
    lines = [line for day_lines in read_day_files(raw_dir, "otto").values() for line in day_lines]
    unknown = [json.loads(line) for line in lines if ingestion_reason(line) == "unknown_event_type"]
    assert unknown[0]["event_type"] == "otto:wishlist"
    broken = [line.split("\t") for line in lines if ingestion_reason(line) == "unparseable"]
    assert all(EVENT_ID.match(event_id) for event_id, _ in broken)
    assert [text for _, text in broken] == [
        '"{\\"session\\":3,\\"events\\":[{\\"aid\\":16,\\"ts\\":NaN,\\"type\\":\\"clicks\\"}]}"',
        '"{\\"session\\":2,\\"events\\":[{\\"aid\\":15,\\"ts\\":16593"',
    ]


def test_diginetica_anonymous_users_and_time(tmp_path):
    raw_dir = tmp_path / "raw"
    import_log("diginetica", write_source(tmp_path, "diginetica"), raw_dir)
    days = events_by_day(raw_dir, "diginetica")
    first = days["2016-05-09"][0]
    assert first["event_time"] == "2016-05-09T00:08:46.309Z"  # 526309 ms after the day's start
    assert first["user_id"] == "session:1" and first["session_id"] == "1"
    assert first["extra"] == {"user_id_from": "session_id"}
    known = [e for e in days["2016-05-09"] if e["session_id"] == "2"]
    assert known[0]["user_id"] == "5" and "extra" not in known[0]
    assert known[0]["event_time"] == "2016-05-09T23:59:59.999Z"
    # timeframe = one whole day: the next arrival day.
    assert [e["item_id"] for e in days["2016-05-10"]] == ["9654", "100", "103", "104", "105", "106"]
    # Anonymous session 5 is not the logged-in user 5.
    assert days["2016-05-10"][1]["user_id"] == "session:5"
    # Session 8 logged in part-way: its anonymous row is the same user; one user per log session.
    logged_in = days["2016-05-10"][2:4]
    assert [(e["user_id"], e["session_id"]) for e in logged_in] == [("9", "8"), ("9", "8")]
    assert logged_in[0]["extra"] == {"user_id_from": "same_session"} and "extra" not in logged_in[1]
    # Session 10 is shared by users 11 and 12: no log session id, the original kept in extra.
    shared = days["2016-05-10"][4:]
    assert [(e["user_id"], "session_id" in e, e["extra"]) for e in shared] == [
        ("11", False, {"source_session_id": "10"}), ("12", False, {"source_session_id": "10"})]


def test_taobao_behaviours(tmp_path):
    raw_dir = tmp_path / "raw"
    import_log("taobao", write_source(tmp_path, "taobao"), raw_dir)
    by_item = {e["item_id"]: e for e in all_events(raw_dir, "taobao")}
    assert by_item["101"]["event_type"] == "click" and by_item["101"]["extra"] == {
        "category_id": "9", "behavior": "fav"}
    assert by_item["100"]["extra"] == {"category_id": "9"}
    assert "session_id" not in by_item["100"]  # sessions come from the inactivity gap
    assert by_item["100"]["event_time"] == "2017-11-24T17:21:10.000Z"


def test_movielens_both_layouts(tmp_path):
    raw_dir = tmp_path / "raw"
    import_log("movielens", write_source(tmp_path, "movielens"), raw_dir)
    ratings = {e["item_id"]: e["extra"]["rating"] for e in all_events(raw_dir, "movielens")}
    assert ratings == {"1193": 5.0, "661": 3.0}
    csv_source = tmp_path / "ratings.csv"
    csv_source.write_text(MOVIELENS_CSV, encoding="utf-8")
    csv_dir = tmp_path / "csv"
    summary = import_log("movielens", csv_source, csv_dir)
    assert summary["rows_read"] == 2 and summary["rejected"] == 0
    events = all_events(csv_dir, "movielens")
    assert {(e["user_id"], e["item_id"], e["extra"]["rating"], e["event_type"]) for e in events} == {
        ("1", "31", 2.5, "view"), ("1", "1029", 3.0, "view")}


def test_retailrocket_types_and_transactions(tmp_path):
    raw_dir = tmp_path / "raw"
    import_log("retailrocket", write_source(tmp_path, "retailrocket"), raw_dir)
    purchase = [e for e in all_events(raw_dir, "retailrocket") if e["event_type"] == "purchase"]
    assert purchase[0]["extra"] == {"transaction_id": "4000"} and purchase[0]["user_id"] == "483717"
    lines = [line for day_lines in read_day_files(raw_dir, "retailrocket").values() for line in day_lines]
    unknown = [json.loads(line) for line in lines if ingestion_reason(line) == "unknown_event_type"]
    assert unknown[0]["event_type"] == "retailrocket:click"


def test_amazon_m2_sessions_and_synthesized_times(tmp_path):
    raw_dir = tmp_path / "raw"
    summary = import_log("amazon_m2", write_source(tmp_path, "amazon_m2"), raw_dir,
                         start_date=date(2023, 3, 1))
    assert summary["start_date"] == "2023-03-01" and summary["rows_read"] == 3
    events = sorted(all_events(raw_dir, "amazon_m2"), key=lambda e: (e["session_id"], e["event_time"]))
    first = [e for e in events if e["session_id"] == "0"]
    assert [e["item_id"] for e in first] == ["B09W9FND7K", "B09JSPLN1M", "B09M7GY217"]
    assert [e["event_time"] for e in first] == [
        "2023-03-01T00:00:00.000Z", "2023-03-01T00:01:00.000Z", "2023-03-01T00:02:00.000Z"]
    assert [e["extra"] for e in first] == [{"locale": "DE"}, {"locale": "DE"}, {"locale": "DE", "next_item": True}]
    second = [e for e in events if e["session_id"] == "1"]
    # The list wraps over two lines inside the quoted field; the row starts on line 3.
    assert [e["item_id"] for e in second] == ["B076THCGSG", "B007MO8IME", "B08MF65MLV", "B001B4TKA0", "B001B4THSA"]
    assert second[0]["event_time"] == "2023-03-01T00:00:08.640Z"  # the next slot of the day
    assert {e["user_id"] for e in second} == {"1"}


def test_amazon_m2_helpers():
    assert parse_item_list("['a' 'b'\n 'c']") == ["a", "b", "c"]
    assert parse_item_list("[]") == []
    assert parse_item_list("['a' b]") is None
    assert parse_item_list("'a' 'b'") is None
    start = session_start_ms(date(2023, 1, 1), 0)
    assert session_start_ms(date(2023, 1, 1), SESSIONS_PER_DAY) - start == 86_400_000


def test_a_stray_quote_costs_one_row_not_the_rest_of_the_file(tmp_path):
    source = tmp_path / "sessions.csv"
    source.write_text(
        "prev_items,next_item,locale\n"
        "\"['A1' 'A2']\",A3,DE\n"
        "\"['B1' 'B2'],B3,DE\n"  # the quote never closes
        "\"['C1']\",C2,UK\n",
        encoding="utf-8",
    )
    raw_dir = tmp_path / "raw"
    summary = import_log("amazon_m2", source, raw_dir)
    assert summary["rows_read"] == 3 and summary["rejected_reasons"] == {"unparseable": 1}
    events = all_events(raw_dir, "amazon_m2")
    assert [e["item_id"] for e in events if e["session_id"] == "2"] == ["C1", "C2"]
    assert summary["rejected_examples"] == [{"line_number": 3, "reason": "unparseable"}]


def test_undecodable_and_oversized_rows_are_quarantined_one_by_one(tmp_path):
    from ingest.importers.canonical import MAX_KEPT_ROW_CHARS
    from ingest.importers.source_files import MAX_RECORD_CHARS

    source = tmp_path / "UserBehavior.csv"
    source.write_bytes(
        b"1,100,9,pv,1511544070\n"
        b"2,10\xe9,9,pv,1511544071\n"  # a Latin-1 byte: the id read would not be the source's
        + b"3," + b"7" * (MAX_RECORD_CHARS + 1) + b",9,pv,1511544072\n"
        + b"4,103,9,buy,1511544073\n"
    )
    raw_dir = tmp_path / "raw"
    summary = import_log("taobao", source, raw_dir)
    assert summary["events_written"] == 2 and summary["rejected_reasons"] == {"unparseable": 2}
    lines = read_day_files(raw_dir, "taobao")["2017-11-24"]
    rejected = [line.split("\t") for line in lines if ingestion_reason(line) == "unparseable"]
    assert rejected[0][1] == '"2,10\\udce9,9,pv,1511544071"'
    assert rejected[1][1].startswith('"3,777')
    assert len(json.loads(rejected[1][1])) == MAX_KEPT_ROW_CHARS
    assert all(line.isascii() for line in lines)


def test_start_date_only_for_formats_without_time(tmp_path):
    with pytest.raises(ValueError, match="own timestamps"):
        import_log("otto", write_source(tmp_path, "otto"), tmp_path / "raw", start_date=date(2023, 1, 1))


# ---- writer behaviour ----


def test_rows_before_the_first_dated_row_join_its_day(tmp_path):
    source = tmp_path / "clicks.tsv"
    source.write_text("SessionId\tItemId\tTime\n1\t10\tbroken\n1\t11\t1396437466\n", encoding="utf-8")
    for buffered in (100, 1):
        raw_dir = tmp_path / f"raw-{buffered}"
        summary = import_log("yoochoose", source, raw_dir, max_buffered_lines=buffered)
        assert summary["days"]["2014-04-02"]["rejected_reasons"] == {"missing_field:event_time": 1}
        lines = read_day_files(raw_dir, "yoochoose")["2014-04-02"]
        assert [ingestion_reason(line) for line in lines] == ["missing_field:event_time", None]


def test_limit_and_reimport_remove_stale_days(tmp_path):
    source = write_source(tmp_path, "diginetica")
    raw_dir = tmp_path / "raw"
    other = raw_dir / "2016-05-10" / "events-00000.jsonl.gz"  # another log's file on that day
    other.parent.mkdir(parents=True)
    other.write_bytes(gzip.compress(b""))
    full = import_log("diginetica", source, raw_dir)
    assert full["arrival_days"] == ["2016-05-09", "2016-05-10"]
    limited = import_log("diginetica", source, raw_dir, limit=2)
    assert limited["rows_read"] == 2 and limited["truncated"] is True
    assert limited["arrival_days"] == ["2016-05-09"]
    assert limited["removed_stale_days"] == ["2016-05-10"]
    assert sorted(read_day_files(raw_dir, "diginetica")) == ["2016-05-09"]
    assert other.exists()  # only this format's file goes
    exact = import_log("diginetica", source, raw_dir, limit=11)
    assert exact["truncated"] is False and exact["rows_read"] == 11


def test_wrong_format_raises_and_writes_nothing(tmp_path):
    raw_dir = tmp_path / "raw"
    with pytest.raises(SourceFormatError, match="right format"):
        import_log("taobao", write_source(tmp_path, "otto"), raw_dir)
    with pytest.raises(SourceFormatError, match="lacks column"):
        import_log("retailrocket", write_source(tmp_path, "diginetica"), raw_dir)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(SourceFormatError, match="no rows"):
        import_log("taobao", empty, raw_dir)
    with pytest.raises(ValueError, match="unknown format"):
        import_log("lastfm", empty, raw_dir)
    with pytest.raises(FileNotFoundError):
        import_log("taobao", tmp_path / "missing.csv", raw_dir)
    assert not raw_dir.exists() or not any(raw_dir.iterdir())


def test_reason_strings_match_ingestion():
    from ingest import schema
    from ingest.importers import canonical

    assert canonical.UNPARSEABLE == schema.UNPARSEABLE
    assert canonical.UNKNOWN_EVENT_TYPE == schema.UNKNOWN_EVENT_TYPE
    assert canonical.REQUIRED_FIELDS == schema.REQUIRED_FIELDS
    assert canonical.missing_field("item_id") == schema.missing_field("item_id")


# ---- entry points: CLI, pipeline function, DAG form ----


def test_cli_prints_the_summary(tmp_path, capsys):
    source = write_source(tmp_path, "taobao")
    assert cli_main(["taobao", str(source), "--out", str(tmp_path / "raw"), "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["rows_read"] == 3 and summary["arrival_days"] == ["2017-11-24"]
    assert "arrival days written (1): 2017-11-24" in err
    assert cli_main(["taobao", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "raw")]) == 2


def test_pipeline_function_writes_into_the_settings_raw_dir(tmp_path):
    from pipeline.imports import import_public_log

    settings = Settings(home=tmp_path / "home")
    source = write_source(tmp_path, "otto")
    summary = import_public_log(settings, "otto", str(source))
    assert summary["arrival_days"] and all(
        Path(day["path"]).parent.parent == settings.raw_dir for day in summary["days"].values())
    with pytest.raises(ValueError, match="absolute"):
        import_public_log(settings, "otto", "otto-sample.jsonl")


def test_import_dag_form_validates_params():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    from core.settings import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "import_public_log.py"))
    assert bag.import_errors == {}
    dag = bag.dags["import_public_log"]
    assert dag.timetable.can_be_scheduled is False  # schedule=None: triggered by hand only
    assert [t.task_id for t in dag.tasks] == ["import_log"]
    assert dag.tasks[0].owner == "recsys-platform"
    good = copy.deepcopy(dag.params)
    good["format"], good["source"] = "diginetica", "/data/train-item-views.csv"
    good.validate()
    for key, bad in (("format", "lastfm"), ("source", "relative/path.csv"), ("source", "")):
        with pytest.raises(ParamValidationError):
            copy.deepcopy(dag.params)[key] = bad


# ---- the real ingestion ----


@pytest.mark.slow
def test_ingestion_quarantines_exactly_the_rejected_rows(tmp_path):
    from ingest.ingest_day import ingest_arrival_day
    from ingest.spark import spark_session

    settings = Settings(home=tmp_path / "home", spark_master="local[2]", spark_driver_memory="1g")
    summary = import_log("otto", write_source(tmp_path, "otto"), settings.raw_dir)
    spark = spark_session(settings)
    for day in summary["arrival_days"]:
        reconciliation = ingest_arrival_day(settings, date.fromisoformat(day), spark=spark)
        counts = summary["days"][day]
        assert reconciliation["input_rows"] == counts["events"] + counts["rejected"]
        assert reconciliation["written_rows"] == counts["events"]
        assert reconciliation["duplicate_rows"] == 0
        assert reconciliation["quarantine_reasons"] == counts["rejected_reasons"]
