"""Event ids come from what a row says (``canonical.EventIds``), not from the file's name or the
row's line: the same rows imported again, under any name, get the same ids, so ingestion (one
event per id) keeps them once; identical rows within a file stay separate events.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date

import pytest

from ingest.importers import import_log
from ingest.importers.canonical import EventIds
from core.settings import Settings
from tests.importers.test_importers import EVENT_ID, SOURCES, read_day_files, write_source


def line_ids(raw_dir, format_name) -> list[str]:
    """Every written line's id, in file order: an event's, or an unparseable row's."""
    return [
        json.loads(line)["event_id"] if line.startswith("{") else line.split("\t", 1)[0]
        for lines in read_day_files(raw_dir, format_name).values()
        for line in lines
    ]


@pytest.mark.parametrize("format_name", sorted(SOURCES))
def test_a_renamed_copy_gets_the_same_event_ids(tmp_path, format_name):
    source = write_source(tmp_path, format_name)
    copy = tmp_path / "elsewhere" / f"renamed-{source.name}.gz"
    copy.parent.mkdir()
    copy.write_bytes(gzip.compress(source.read_bytes()))
    import_log(format_name, source, tmp_path / "a")
    import_log(format_name, copy, tmp_path / "b")
    ids = line_ids(tmp_path / "a", format_name)
    assert ids and len(set(ids)) == len(ids)
    assert line_ids(tmp_path / "b", format_name) == ids
    # Not only the ids: the whole import is the same, byte for byte.
    assert read_day_files(tmp_path / "b", format_name) == read_day_files(tmp_path / "a", format_name)


def test_identical_rows_stay_separate_events_and_a_reimport_maps_them_alike(tmp_path):
    # A double click: the same session, item and second, twice, and once more after another row.
    rows = ("1,100,9,pv,1511544070\n" "1,100,9,pv,1511544070\n" "1,101,9,pv,1511544071\n"
            "1,100,9,pv,1511544070\n" "2,100,9,pv,1511544070\n")
    (tmp_path / "UserBehavior.csv").write_text(rows, encoding="utf-8")
    (tmp_path / "copy.csv").write_text(rows, encoding="utf-8")
    first = import_log("taobao", tmp_path / "UserBehavior.csv", tmp_path / "a")
    import_log("taobao", tmp_path / "copy.csv", tmp_path / "b")
    assert first["events_written"] == 5
    ids = line_ids(tmp_path / "a", "taobao")
    assert len(set(ids)) == 5 and ids == line_ids(tmp_path / "b", "taobao")
    # Repeats of the first row's content are marked :1 and :2; the other users' row is its own.
    assert ids[1] == f"{ids[0]}:1" and ids[3] == f"{ids[0]}:2"
    assert all(EVENT_ID.match(i) for i in ids) and ids[4].count(":") == 1


def test_an_id_depends_on_every_field_of_the_row(tmp_path):
    base = "1,100,9,pv,1511544070"
    variants = [base, "2,100,9,pv,1511544070", "1,101,9,pv,1511544070", "1,100,8,pv,1511544070",
                "1,100,9,buy,1511544070", "1,100,9,pv,1511544071"]
    (tmp_path / "UserBehavior.csv").write_text("\n".join(variants) + "\n", encoding="utf-8")
    import_log("taobao", tmp_path / "UserBehavior.csv", tmp_path / "raw")
    ids = line_ids(tmp_path / "raw", "taobao")
    assert len(set(ids)) == len(variants) and not any(":" in i.split(":", 1)[1] for i in ids)


def test_repeats_are_counted_within_the_window():
    ids = EventIds("taobao", window=3)
    record = {"item_id": "1"}
    first, repeat = ids.for_record(record), ids.for_record(record)
    assert repeat == f"{first}:1"
    for k in range(3):
        ids.for_record({"item_id": f"other-{k}"})
    # Both earlier copies have left the window: a copy this far away is taken for a
    # re-delivery of the same event, and gets the first copy's id.
    assert ids.for_record(record) == first
    # Ids differ between formats even for the same content.
    assert EventIds("otto").for_record(record).split(":", 1)[1] != first.split(":", 1)[1]
    with pytest.raises(ValueError):
        EventIds("taobao", window=0)


@pytest.mark.slow
def test_ingestion_keeps_one_copy_of_a_reimported_file(tmp_path):
    """The same rows reaching one arrival day twice (an import of the file and of a renamed
    copy, both in the day's folder) are ingested once."""
    from ingest.ingest_day import ingest_arrival_day
    from ingest.spark import spark_session

    settings = Settings(home=tmp_path / "home", spark_master="local[2]", spark_driver_memory="1g")
    source = write_source(tmp_path, "taobao")
    summary = import_log("taobao", source, settings.raw_dir)
    renamed = tmp_path / "renamed.csv"
    shutil.copyfile(source, renamed)
    import_log("taobao", renamed, tmp_path / "second")
    (day,) = summary["arrival_days"]
    shutil.copyfile(tmp_path / "second" / day / "taobao-00000.jsonl.gz",
                    settings.raw_dir / day / "taobao-copy-00000.jsonl.gz")
    reconciliation = ingest_arrival_day(settings, date.fromisoformat(day), spark=spark_session(settings))
    counts = summary["days"][day]
    assert reconciliation["input_rows"] == 2 * (counts["events"] + counts["rejected"])
    assert reconciliation["written_rows"] == counts["events"]
    assert reconciliation["duplicate_rows"] == counts["events"]
