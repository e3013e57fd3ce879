"""Item tables beside imported events (``--items``): JSON and CSV/TSV layouts, every bad row
quarantined with its reason, the lake's Parquet files replaced whole and byte-identical on a
re-import, and the Amazon S3Rec sequence importer whose synthesized times make the platform's
temporal split leave-one-out."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.settings import Settings
from ingest.importers import SourceFormatError, import_log, summary_lines
from ingest.importers.__main__ import main as cli_main
from ingest.importers.amazon_s3rec import ITEM_SPACING_MS
from ingest.importers.item_table import read_item_table
from ingest.item_lake import item_quarantine_path, item_table_path

# Three users of an S3Rec file; user 3 has one item after a blank line, user 9 none at all.
S3REC = "1 10 11 12 13\n2 11 14\n\n3 10\n9\n4 12 12 15\n"
ITEMS_JSON = json.dumps({"10": [1, 2, 3]})[:-1] + (
    ', "11": [4, "5", 4], "12": [], "13": "6|7", "14": [1.5], "15": [null], "10": [9], '
    '"": [1], "bad\\u0007id": [2], "16": [7.0, {"a": 1}], "17": ["x\\u0001y"]}'
)
ITEMS_CSV = (
    "Item_Id,category,brand\n"
    'i1,"shoes|sport",acme\n'
    "i2,,acme|acme\n"
    "i3,NA,\n"
    "i4,books\n"  # a field short
    '"i5,"broken,x\n'  # a stray quote inside a field
    ",toys,x\n"
    "i1,hats,y\n"
    "i6,bell\x07,z\n"
    '"i7","a, b",c\n'
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def lake_rows(lake: Path, format_name: str) -> list[tuple]:
    table = pq.read_table(item_table_path(lake, format_name)).to_pylist()
    assert {row["source"] for row in table} <= {format_name}
    return [(r["item_id"], r["attribute"], r["value"], r["position"]) for r in table]


def quarantine(lake: Path, format_name: str) -> list[tuple]:
    return [(r["record"], r["item_id"], r["reason"])
            for r in pq.read_table(item_quarantine_path(lake, format_name)).to_pylist()]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- reading the layouts


def test_json_items_keep_order_once_and_quarantine_every_bad_entry(tmp_path: Path) -> None:
    table = read_item_table(write(tmp_path, "items.json", ITEMS_JSON))
    assert table.layout == "json"
    assert [(r.item_id, r.value, r.position) for r in table.rows] == [
        ("10", "1", 0), ("10", "2", 1), ("10", "3", 2), ("11", "4", 0), ("11", "5", 1)]
    assert {r.attribute for r in table.rows} == {"attribute"}
    assert table.repeated_values == 1 and table.items == 2 and table.items_without_attributes == 1
    # Entries are numbered in file order; a repeated key is a row of its own (json.loads alone
    # would keep the last one silently).
    assert [(r.record, r.item_id, r.reason) for r in table.rejected] == [
        (4, "13", "not_a_list"),
        (5, "14", "invalid_value:attribute"),
        (6, "15", "invalid_value:attribute"),
        (7, "10", "duplicate_item"),
        (8, "", "missing_field:item_id"),
        (9, "bad\x07id", "invalid_id:item_id"),
        (10, "16", "invalid_value:attribute"),
        (11, "17", "invalid_value:attribute"),
    ]
    assert table.rows_read == 11 == len({r.item_id for r in table.rows}) + 1 + len(table.rejected)
    assert json.loads(table.rejected[3].text) == {"10": [9]}


def test_csv_items_split_multi_valued_cells_and_quarantine_bad_rows(tmp_path: Path) -> None:
    table = read_item_table(write(tmp_path, "items.csv", ITEMS_CSV))
    assert table.layout == "csv"
    assert [(r.item_id, r.attribute, r.value, r.position) for r in table.rows] == [
        ("i1", "category", "shoes", 0), ("i1", "category", "sport", 1), ("i1", "brand", "acme", 2),
        ("i2", "brand", "acme", 0),
        ("i7", "category", "a, b", 0), ("i7", "brand", "c", 1),
    ]
    assert table.repeated_values == 1  # i2's acme|acme
    assert table.items_without_attributes == 1  # i3: NA and an empty cell are no value
    # Records are the lines the rows start on.
    assert [(r.record, r.reason) for r in table.rejected] == [
        (5, "wrong_field_count"),
        (6, "unparseable"),
        (7, "missing_field:item_id"),
        (8, "duplicate_item"),
        (9, "invalid_value:category"),
    ]
    assert table.rejected[1].text == '"i5,"broken,x'
    assert table.rows_read == 9


def test_tsv_items_are_told_apart_by_the_header(tmp_path: Path) -> None:
    source = tmp_path / "items.tsv.gz"
    source.write_bytes(gzip.compress(b"itemId\tcolor\n1\tred|blue\n2\t\n"))
    table = read_item_table(source)
    assert table.layout == "tsv"
    assert [(r.item_id, r.attribute, r.value) for r in table.rows] == [("1", "color", "red"), ("1", "color", "blue")]
    assert table.items_without_attributes == 1


@pytest.mark.parametrize("text, message", [
    ("category,brand\nshoes,acme\n", "lacks an item_id column"),
    ("item_id,a:b\n1,2\n", "without ':'"),
    ("item_id,a,a\n1,2,3\n", "distinct"),
    ('{"1": [1], ', "not a JSON item table"),
    ("", "holds no item rows"),
    ("item_id,brand\n1,\n2,NA\n", "none of 2 item rows has an attribute value"),
])
def test_a_file_that_is_no_item_table_is_refused_before_anything_is_written(
        tmp_path: Path, text: str, message: str) -> None:
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    with pytest.raises(SourceFormatError, match=message):
        import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), raw,
                   items=write(tmp_path, "items.csv", text), lake_dir=lake)
    assert not raw.exists() and not lake.exists()


def test_items_need_a_lake_and_an_existing_file(tmp_path: Path) -> None:
    source = write(tmp_path, "Beauty.txt", S3REC)
    with pytest.raises(ValueError, match="lake_dir"):
        import_log("amazon_s3rec", source, tmp_path / "raw", items=write(tmp_path, "i.json", ITEMS_JSON))
    with pytest.raises(FileNotFoundError, match="item table not found"):
        import_log("amazon_s3rec", source, tmp_path / "raw", items=tmp_path / "nope.json", lake_dir=tmp_path)


# ---------------------------------------------------------------- the lake


def test_import_lands_the_item_table_and_its_quarantine_in_the_lake(tmp_path: Path) -> None:
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    items = write(tmp_path, "items.json", ITEMS_JSON)
    summary = import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), raw, items=items, lake_dir=lake)
    assert summary["items"]["path"] == str(item_table_path(lake, "amazon_s3rec"))
    assert summary["items"]["rejected"] == 8 and summary["items"]["items"] == 2
    assert summary["items"]["rejected_reasons"]["invalid_value:attribute"] == 4
    assert lake_rows(lake, "amazon_s3rec") == [
        ("10", "attribute", "1", 0), ("10", "attribute", "2", 1), ("10", "attribute", "3", 2),
        ("11", "attribute", "4", 0), ("11", "attribute", "5", 1)]
    assert quarantine(lake, "amazon_s3rec")[0] == (4, "13", "not_a_list")
    assert any("item table: 2 items, 5 attribute values" in line for line in summary_lines(summary, "amazon_s3rec"))

    # Only the item table's own files; nothing of the events in the lake (ingestion's job).
    assert sorted(tree_bytes(lake)) == ["item_quarantine/amazon_s3rec.parquet", "items/amazon_s3rec.parquet"]
    first = tree_bytes(lake)
    again = import_log("amazon_s3rec", write(tmp_path, "copy.txt", S3REC), raw, items=items, lake_dir=lake)
    assert tree_bytes(lake) == first and again["items"] == summary["items"] | {"source": str(items)}

    # A fixed table replaces both files: no stale quarantine row survives.
    import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), raw,
               items=write(tmp_path, "fixed.csv", "item_id,brand\n10,acme\n"), lake_dir=lake)
    assert lake_rows(lake, "amazon_s3rec") == [("10", "brand", "acme", 0)]
    assert quarantine(lake, "amazon_s3rec") == []
    # Another format's table sits beside it; an import without --items leaves the lake alone.
    import_log("movielens", write(tmp_path, "u.data", "1\t10\t4\t881250949\n"), raw,
               items=write(tmp_path, "movies.csv", "item_id,genre\n10,drama|crime\n"), lake_dir=lake)
    before = tree_bytes(lake)
    import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), raw)
    assert tree_bytes(lake) == before and len(before) == 4


def test_undecodable_bytes_are_quarantined_and_stored_escaped(tmp_path: Path) -> None:
    source = tmp_path / "items.tsv"
    source.write_bytes(b"item_id\tbrand\n1\tacme\n2\tcaf\xe9\n")
    lake = tmp_path / "lake"
    import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), tmp_path / "raw", items=source, lake_dir=lake)
    rows = pq.read_table(item_quarantine_path(lake, "amazon_s3rec")).to_pylist()
    assert [(r["record"], r["reason"], r["text"]) for r in rows] == [(3, "unparseable", "2\tcaf\\udce9")]


# ---------------------------------------------------------------- the S3Rec sequences


def raw_events(raw: Path, format_name: str) -> list[dict]:
    events = []
    for path in sorted(raw.glob(f"*/{format_name}-00000.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            events += [json.loads(line) for line in handle if line.startswith("{")]
    return events


def test_s3rec_times_align_every_user_s_last_item(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    summary = import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), raw, start_date=date(2014, 3, 1))
    assert summary["rows_read"] == 5 and summary["rejected_reasons"] == {"unparseable": 1}  # user 9
    events = raw_events(raw, "amazon_s3rec")
    assert summary["events_written"] == len(events) == 10
    assert {e["event_type"] for e in events} == {"view"}
    by_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append((event["event_time"], event["item_id"]))
    for user, items in by_user.items():
        by_user[user] = sorted(items)
    # The longest sequence (4 items) starts at the start date; every last item is at one instant.
    assert by_user["1"][0] == ("2014-03-01T00:00:00.000Z", "10")
    last = {times[-1][0] for times in by_user.values()}
    assert last == {"2014-03-04T00:03:00.000Z"}
    assert [i for _, i in by_user["4"]] == ["12", "12", "15"]  # a repeat stays two events
    steps = {datetime.fromisoformat(b[0]) - datetime.fromisoformat(a[0])
             for times in by_user.values() for a, b in zip(times, times[1:])}
    assert steps == {timedelta(milliseconds=ITEM_SPACING_MS)}
    assert summary["arrival_days"] == ["2014-03-01", "2014-03-02", "2014-03-03", "2014-03-04"]


def test_s3rec_layout_makes_the_temporal_split_leave_one_out(tmp_path: Path) -> None:
    from training.data import UserSequence, temporal_split

    raw = tmp_path / "raw"
    import_log("amazon_s3rec", write(tmp_path, "Beauty.txt", S3REC), raw)
    by_user: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in raw_events(raw, "amazon_s3rec"):
        by_user[event["user_id"]].append((datetime.fromisoformat(event["event_time"]).replace(tzinfo=None),
                                          event["item_id"]))
    sequences = [UserSequence(user, tuple(i for _, i in sorted(pairs)), tuple(t for t, _ in sorted(pairs)))
                 for user, pairs in sorted(by_user.items())]
    split = temporal_split(sequences, max_len=50)  # the nightly default: one-day windows
    # Test: each user's last item after all the others (user 3 has no history, and the split
    # collapses user 4's repeated 12 into one step, its own rule).
    assert {(e.user_id, e.target_item, e.input_items) for e in split.test_examples} == {
        ("1", "13", ("10", "11", "12")), ("2", "14", ("11",)), ("4", "15", ("12",))}
    # Validation: the item before the last (user 2's has no history before it).
    assert {(e.user_id, e.target_item, e.input_items) for e in split.val_examples} == {
        ("1", "12", ("10", "11"))}


# ---------------------------------------------------------------- entry points


def test_both_command_lines_take_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    source, items = write(tmp_path, "Beauty.txt", S3REC), write(tmp_path, "items.json", ITEMS_JSON)
    lake = tmp_path / "lake"
    assert cli_main(["amazon_s3rec", str(source), "--out", str(tmp_path / "raw"),
                     "--items", str(items), "--lake", str(lake)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["items"]["items"] == 2 and "item table: 2 items" in err
    assert item_table_path(lake, "amazon_s3rec").is_file()

    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["import", "amazon_s3rec", str(source), "--items", str(items)],
                                env={"RECSYS_HOME": str(home), "RECSYS_DEBUG": None})
    assert result.exit_code == 0, result.output
    assert item_table_path(Settings(home=home).lake_dir, "amazon_s3rec").is_file()
    refused = CliRunner().invoke(app, ["import", "amazon_s3rec", str(source), "--items", str(source)],
                                 env={"RECSYS_HOME": str(home), "RECSYS_DEBUG": None})
    assert refused.exit_code == 2 and "lacks an item_id column" in refused.output


@pytest.mark.shared_data
def test_real_beauty_attributes_reach_the_lake_whole(shared_data: Path, tmp_path: Path) -> None:
    from training.data import ItemVocabulary
    from training.item_side import ItemAttributes, read_item_attributes_json

    folder = shared_data / "amazon"
    attributes = folder / "Beauty_item2attributes.json"
    lake = tmp_path / "lake"
    summary = import_log("amazon_s3rec", folder / "Beauty.txt", tmp_path / "raw", limit=50,
                         items=attributes, lake_dir=lake)
    expected = read_item_attributes_json(attributes)
    assert summary["items"]["rejected"] == 0 and summary["items"]["items"] == len(expected)

    from_lake: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for item, attribute, value, position in lake_rows(lake, "amazon_s3rec"):
        from_lake[item].append((position, f"{attribute}:{value}"))
    mapping = {item: [token for _, token in sorted(pairs)] for item, pairs in from_lake.items()}
    assert {item: [t.removeprefix("attribute:") for t in tokens] for item, tokens in mapping.items()} == {
        item: list(dict.fromkeys(values)) for item, values in expected.items()}
    # The prefixed tokens index exactly as the file's own ids do (training/item_table.py).
    vocab = ItemVocabulary(sorted(expected))
    ours, theirs = ItemAttributes.from_mapping(vocab, mapping), ItemAttributes.from_mapping(vocab, expected)
    assert ours.n_attributes == theirs.n_attributes and bool((ours.table == theirs.table).all())
