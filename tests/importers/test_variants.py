"""The real variants of DIGINETICA and YOOCHOOSE: each is recognised from its first line and
converted by its own rules, and a file matching none is refused with one line naming them.

DIGINETICA sessions are written out of ``timeframe`` order here, as in the real files, and one
session runs past midnight (its ``eventdate`` moves on part-way), which is where the ordering
rule shows: a session ordered by event time must be ordered by ``timeframe``.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.importers import SourceFormatError, import_log
from ingest.importers.__main__ import main as cli_main
from tests.importers.test_event_ids import line_ids
from tests.importers.test_importers import EVENT_ID, all_events, events_by_day, ingestion_reason, read_day_files

# Session 1 starts on 2016-05-09 and its last view (15 minutes in) is dated 2016-05-10: it ran
# past midnight. Session 2 logs in part-way.
VIEWS_ROWS = (
    "1;NA;300;900000;2016-05-10\n"
    "1;NA;100;0;2016-05-09\n"
    "1;NA;200;300000;2016-05-09\n"
    "2;7;400;5000;2016-05-11\n"
    "2;NA;500;1000;2016-05-11\n"
)
# The same views as the preprocessing scripts write them: the day as unix seconds, no users.
PREPROCESSED_TSV = (
    "sessionId\titemId\ttimeframe\tTime\n"
    "1\t300\t900000\t1462838400.0\n"
    "1\t100\t0\t1462752000.0\n"
    "1\t200\t300000\t1462752000.0\n"
    "2\t400\t5000\t1462924800.0\n"
    "2\t500\t1000\t1462924800.0\n"
)
DIGINETICA_VARIANTS = {
    "full release header": "sessionId;userId;itemId;timeframe;eventdate\n" + VIEWS_ROWS,
    "sample header": "session_id;user_id;item_id;timeframe;eventdate\n" + VIEWS_ROWS,
    "no header": VIEWS_ROWS,
    "preprocessed TSV": PREPROCESSED_TSV,
}
# Per session, the items in timeframe order and their times: the session's first day plus
# the timeframe.
SESSION_1 = [("100", "2016-05-09T00:00:00.000Z"), ("200", "2016-05-09T00:05:00.000Z"),
             ("300", "2016-05-09T00:15:00.000Z")]
SESSION_2 = [("500", "2016-05-11T00:00:01.000Z"), ("400", "2016-05-11T00:00:05.000Z")]

YOOCHOOSE_BUYS = (
    "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n"
    "420374,2014-04-06T18:44:58.325Z,214537850,10471,1\n"
    "281626,2014-04-06T09:40:13.032Z,214535653,1883,1\n"
    "489758,2014-04-06T09:59:52.422Z,214826955,0,0\n"
    "489758,2014-04-06T10:01:00.000Z,214826955,n/a,2\n"
)
CLICKS_TSV_ROWS = "1\t214716935\t1396437466.94\n1\t214832672\t1396438212.318\n"
YOOCHOOSE_VARIANTS = {
    # name: (file name, text, event type of every row)
    "clicks TSV": ("rsc15_train_full.txt", "SessionId\tItemId\tTime\n" + CLICKS_TSV_ROWS, "click"),
    "clicks TSV without header": ("clicks.tsv", CLICKS_TSV_ROWS, "click"),
    "clicks.dat": ("yoochoose-clicks.dat", "1,2014-04-07T10:51:09.277Z,214536502,0\n"
                   "1,2014-04-07T10:54:09.868Z,214536500,S\n", "click"),
    "buys.dat": ("yoochoose-buys.dat", YOOCHOOSE_BUYS, "purchase"),
}
NOT_YOOCHOOSE = {
    "three comma fields": "1,214536502,1396437466\n",
    "clicks.dat with a header line": "session,timestamp,item,category\n1,2014-04-07T10:51:09.277Z,214536502,0\n",
    "DIGINETICA views": "session_id;user_id;item_id;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n",
    "DIGINETICA TSV without header": "1\t81766\t526309\t1462752000.0\n",
    "TSV without the columns": "session\titem\tts\n1\t2\t3\n",
}
NOT_DIGINETICA = {
    "comma-separated": "sessionId,itemId,timeframe,eventdate\n1,81766,526309,2016-05-09\n",
    "YOOCHOOSE clicks TSV": "SessionId\tItemId\tTime\n1\t214716935\t1396437466.94\n",
    "views without timeframe": "sessionId;userId;itemId;eventdate\n1;NA;81766;2016-05-09\n",
    "one column": "81766\n",
}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sessions(events: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """Per log session (or the original one, for a shared session), (item, time) in time order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for event in sorted(events, key=lambda e: (e["event_time"], e["event_id"])):
        session = event.get("session_id") or event["extra"]["source_session_id"]
        out.setdefault(session, []).append((event["item_id"], event["event_time"]))
    return out


# ---- DIGINETICA ----


@pytest.mark.parametrize("variant", sorted(DIGINETICA_VARIANTS))
def test_diginetica_sessions_are_ordered_by_timeframe(tmp_path, variant):
    source = write(tmp_path, "train-item-views.csv", DIGINETICA_VARIANTS[variant])
    summary = import_log("diginetica", source, tmp_path / "raw")
    assert summary["rows_read"] == 5 and summary["rejected"] == 0
    events = all_events(tmp_path / "raw", "diginetica")
    assert {e["event_type"] for e in events} == {"view"}
    # A session that ran past midnight lasts 15 minutes and stays on the day it started.
    assert sessions(events) == {"1": SESSION_1, "2": SESSION_2}
    assert summary["arrival_days"] == ["2016-05-09", "2016-05-11"]
    last = next(e for e in events if e["item_id"] == "300")
    day_column = "Time" if variant == "preprocessed TSV" else "eventdate"
    # The row's own day, which the event time does not show, is kept.
    assert last["extra"][day_column] == ("1462838400.0" if variant == "preprocessed TSV" else "2016-05-10")


def test_diginetica_users_in_each_variant(tmp_path):
    original = import_log("diginetica", write(tmp_path, "views.csv", DIGINETICA_VARIANTS["full release header"]),
                          tmp_path / "a")
    preprocessed = import_log("diginetica", write(tmp_path, "views.tsv", PREPROCESSED_TSV), tmp_path / "b")
    assert original["events_written"] == preprocessed["events_written"] == 5
    users = {e["item_id"]: (e["user_id"], e["extra"]["user_id_from"] if "extra" in e else None)
             for e in all_events(tmp_path / "a", "diginetica")}
    # Session 2's anonymous row belongs to the user who logged in part-way.
    assert users["400"] == ("7", None) and users["500"] == ("7", "same_session")
    assert users["100"] == ("session:1", "session_id")
    # The preprocessed TSV has no users: every session is its own anonymous user.
    assert {(e["user_id"], e["extra"]["user_id_from"]) for e in all_events(tmp_path / "b", "diginetica")} == {
        ("session:1", "session_id"), ("session:2", "session_id")}


def test_diginetica_times_it_cannot_build_are_quarantined(tmp_path):
    source = write(tmp_path, "views.tsv", "sessionId\titemId\ttimeframe\tTime\n"
                   "1\t100\t0\t1462752000\n"
                   "1\t101\t-5\t1462752000\n"  # a negative offset
                   "2\t102\t10\tyesterday\n"
                   "3\t103\t99999999999999999\t1462752000\n")  # past year 9999
    summary = import_log("diginetica", source, tmp_path / "raw")
    assert summary["events_written"] == 1 and summary["rejected_reasons"] == {"missing_field:event_time": 3}
    lines = read_day_files(tmp_path / "raw", "diginetica")["2016-05-09"]
    assert [ingestion_reason(line) for line in lines].count(None) == 1


# ---- YOOCHOOSE ----


@pytest.mark.parametrize("variant", sorted(YOOCHOOSE_VARIANTS))
def test_yoochoose_variants_event_types_and_repeated_rows(tmp_path, variant):
    name, text, event_type = YOOCHOOSE_VARIANTS[variant]
    lines = text.splitlines(keepends=True)
    header = lines[:1] if text.startswith("SessionId") else []
    rows = lines[len(header):]
    # The first row twice, as the real log has double clicks (and repeated buys).
    source = write(tmp_path, name, "".join(header + rows[:1] + rows))
    summary = import_log("yoochoose", source, tmp_path / "raw")
    (day_events,) = events_by_day(tmp_path / "raw", "yoochoose").values()
    assert summary["rejected"] == 0 and len(day_events) == summary["rows_read"] == len(rows) + 1
    assert {e["event_type"] for e in day_events} == {event_type}
    assert all(e["user_id"] == e["session_id"] for e in day_events)
    # Both copies are kept, as two events: the repeat's id is the first one's marked :1.
    first, repeat = day_events[0], day_events[1]
    assert repeat["event_id"] == first["event_id"] + ":1"
    assert {k: v for k, v in repeat.items() if k != "event_id"} == {k: v for k, v in first.items() if k != "event_id"}


def test_yoochoose_buys_keep_price_and_quantity(tmp_path):
    import_log("yoochoose", write(tmp_path, "yoochoose-buys.dat", YOOCHOOSE_BUYS), tmp_path / "raw")
    events = sorted(all_events(tmp_path / "raw", "yoochoose"), key=lambda e: e["event_time"])
    assert [(e["session_id"], e["item_id"], e["event_time"], e["extra"]) for e in events] == [
        ("281626", "214535653", "2014-04-06T09:40:13.032Z", {"price": 1883, "quantity": 1}),
        ("489758", "214826955", "2014-04-06T09:59:52.422Z", {"price": 0, "quantity": 0}),
        # A price that is not a number is kept as written, not dropped.
        ("489758", "214826955", "2014-04-06T10:01:00.000Z", {"price": "n/a", "quantity": 2}),
        ("420374", "214537888", "2014-04-06T18:44:58.314Z", {"price": 12462, "quantity": 1}),
        ("420374", "214537850", "2014-04-06T18:44:58.325Z", {"price": 10471, "quantity": 1}),
    ]
    assert all(e["event_type"] == "purchase" and EVENT_ID.match(e["event_id"]) for e in events)


def test_yoochoose_buys_rows_of_another_shape_are_quarantined(tmp_path):
    source = write(tmp_path, "yoochoose-buys.dat", YOOCHOOSE_BUYS + "1,2014-04-06T10:00:00.000Z,5,0\n")
    summary = import_log("yoochoose", source, tmp_path / "raw")
    assert summary["events_written"] == 5 and summary["rejected_reasons"] == {"unparseable": 1}


def test_yoochoose_refuses_diginetica_preprocessed_tsv(tmp_path):
    source = write(tmp_path, "train-item-views.txt", PREPROCESSED_TSV)
    with pytest.raises(SourceFormatError, match="import it as diginetica") as refused:
        import_log("yoochoose", source, tmp_path / "raw")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "raw").exists()


# ---- files of no known variant ----

REFUSED = {("diginetica", case): text for case, text in NOT_DIGINETICA.items()} | {
    ("yoochoose", case): text for case, text in NOT_YOOCHOOSE.items()}
SUPPORTED = {
    "diginetica": "supported diginetica variants: train-item-views .*preprocessed TSV",
    "yoochoose": "supported yoochoose variants: clicks TSV .*clicks.dat .*buys.dat",
}


@pytest.mark.parametrize(("format_name", "case"), sorted(REFUSED))
def test_a_file_of_no_known_variant_is_refused_naming_the_variants(tmp_path, format_name, case):
    source = write(tmp_path, "log.txt", REFUSED[format_name, case])
    with pytest.raises(SourceFormatError, match=SUPPORTED[format_name]) as refused:
        import_log(format_name, source, tmp_path / "raw")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "raw").exists()


# ---- the command line ----


@pytest.mark.parametrize(("format_name", "text"), [
    ("yoochoose", PREPROCESSED_TSV),
    ("yoochoose", NOT_YOOCHOOSE["three comma fields"]),
    ("diginetica", NOT_DIGINETICA["comma-separated"]),
])
def test_cli_refuses_an_unknown_variant_in_one_line(tmp_path, capsys, format_name, text):
    source = write(tmp_path, "log.txt", text)
    assert cli_main([format_name, str(source), "--out", str(tmp_path / "raw")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {source}: ")
    assert f"supported {format_name} variants" in err and "Traceback" not in err


def test_cli_reports_a_broken_gzip_in_one_line(tmp_path, capsys):
    truncated = tmp_path / "views.csv.gz"
    truncated.write_bytes(gzip.compress(DIGINETICA_VARIANTS["sample header"].encode())[:40])
    assert cli_main(["diginetica", str(truncated), "--out", str(tmp_path / "raw")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {truncated}: ")


# ---- the public samples (skipped when ../shared/data is absent) ----


@pytest.mark.shared_data
def test_diginetica_public_sample_times_are_session_start_day_plus_timeframe(shared_data, tmp_path):
    source = shared_data / "diginetica" / "sample_train-item-views.csv"
    summary = import_log("diginetica", source, tmp_path / "raw")
    rows, start_day = [], {}
    with open(source, encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            session, _, item, timeframe, eventdate = line.rstrip("\n").split(";")
            rows.append((session, item, int(timeframe)))
            start_day[session] = min(start_day.get(session, eventdate), eventdate)
    assert summary["events_written"] == len(rows) and summary["rejected"] == 0
    imported = []
    for event in all_events(tmp_path / "raw", "diginetica"):
        session = event.get("session_id") or event["extra"]["source_session_id"]
        day = datetime.fromisoformat(start_day[session]).replace(tzinfo=timezone.utc)
        offset = datetime.fromisoformat(event["event_time"]) - day
        imported.append((session, event["item_id"], offset.days * 86_400_000 + offset.seconds * 1000
                         + offset.microseconds // 1000))
    # Every view is at its session's first day plus its timeframe: time order is timeframe order,
    # also in the sample's sessions that run past midnight.
    assert sorted(imported) == sorted(rows)


@pytest.mark.shared_data
def test_yoochoose_public_sample_reimported_under_another_name_keeps_its_ids(shared_data, tmp_path):
    source = shared_data / "yoochoose" / "yoochoose-clicks-100k_train_full.txt"
    copy = tmp_path / "rsc15-copy.tsv"
    copy.write_bytes(source.read_bytes())
    first = import_log("yoochoose", source, tmp_path / "a")
    import_log("yoochoose", copy, tmp_path / "b")
    ids = line_ids(tmp_path / "a", "yoochoose")
    assert len(ids) == len(set(ids)) == first["events_written"] == first["rows_read"]
    assert line_ids(tmp_path / "b", "yoochoose") == ids
