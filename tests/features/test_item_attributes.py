"""Item attributes through the whole data path: import (JSON and CSV item tables) -> lake ->
dbt (stg_lake__item_attributes, dim_item_attributes) -> Feast export, apply, materialize ->
online and point-in-time reads, and the training side's read of the same mart.

The events reach the lake through a stand-in for the Spark ingestion (``lake_from_raw``: the
importer's valid lines written in the lake's layout), so the test stays off the JVM; the Spark job
itself is tested under tests/ingest. Everything on the item path is the product's own code.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import Settings
from features import store as feature_ops
from features.definitions import apply_feature_repo
from features.export import export_feature_data
from features.materialize import materialize
from ingest.importers import import_log
from tests.features.test_feature_store import DAY0, DAY3, _redis_answers, build_warehouse

S3REC = "u1 10 11 12\nu2 11 13 10\n"
ITEMS_JSON = {"10": [1, 2], "11": [2], "12": [3, 1, 3], "13": "x", "99": [4]}  # 13: not a list
MOVIELENS = "7\t10\t4\t1000000000\n7\t500\t3\t1000000060\n"
ITEMS_CSV = "item_id,genre,studio\n10,drama|crime,acme\n500,comedy,\n501\n"  # 501: a field short
# What dim_item_attributes holds: 10 is in both tables (positions interleave), 99 and 500 have
# no events, 13 and 501 were quarantined.
EXPECTED = {
    "10": ["attribute:1", "genre:drama", "attribute:2", "genre:crime", "studio:acme"],
    "11": ["attribute:2"],
    "12": ["attribute:3", "attribute:1"],
    "500": ["genre:comedy"],
    "99": ["attribute:4"],
}
# A nightly interval nowhere near the attributes' epoch stamp.
RUN_END = datetime(2026, 11, 21, tzinfo=timezone.utc)


def lake_from_raw(settings: Settings) -> int:
    """The raw days' valid events in the lake's layout (event_date=/arrival_date=/part-*.parquet)."""
    partitions: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(settings.raw_dir.glob("*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("{") and all(k in (e := json.loads(line)) for k in ("event_time", "item_id")):
                    time = datetime.fromisoformat(e["event_time"])
                    partitions[(time.date().isoformat(), path.parent.name)].append(
                        {"event_id": e["event_id"], "event_time": time, "user_id": e["user_id"],
                         "session_id": e.get("session_id"), "item_id": e["item_id"],
                         "event_type": e["event_type"], "extra": None})
    schema = pa.schema([("event_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
                        ("user_id", pa.string()), ("session_id", pa.string()), ("item_id", pa.string()),
                        ("event_type", pa.string()), ("extra", pa.string())])
    for (event_date, arrival), rows in partitions.items():
        folder = settings.events_dir / f"event_date={event_date}" / f"arrival_date={arrival}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-00000.parquet")
    return sum(len(rows) for rows in partitions.values())


def import_both(settings: Settings, folder: Path, items_json: dict) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"Beauty.txt": S3REC, "items.json": json.dumps(items_json), "u.data": MOVIELENS, "movies.csv": ITEMS_CSV}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [import_log("amazon_s3rec", folder / "Beauty.txt", settings.raw_dir, items=folder / "items.json",
                       lake_dir=settings.lake_dir),
            import_log("movielens", folder / "u.data", settings.raw_dir, items=folder / "movies.csv",
                       lake_dir=settings.lake_dir)]


def load_store(settings: Settings) -> dict:
    from sessions.session_tables import build_session_tables

    build = build_session_tables(settings)
    exported = export_feature_data(settings)
    apply_feature_repo(settings)
    return {"build": build, "exported": exported,
            "materialized": materialize(settings, RUN_END - timedelta(days=3), RUN_END)}


def online_attributes(settings: Settings, item_ids: list[str]) -> dict[str, list[str] | None]:
    store = feature_ops.feature_store(settings)
    rows = store.get_online_features(features=["item_attributes:attribute_values"],
                                     entity_rows=[{"item_id": i} for i in item_ids]).to_dict()
    return dict(zip(rows["item_id"], rows["attribute_values"]))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[dict], dict]:
    home = tmp_path_factory.mktemp("item-path")
    settings = Settings(home=home / "home")
    imports = import_both(settings, home / "sources", ITEMS_JSON)
    assert lake_from_raw(settings) == 8
    return settings, imports, load_store(settings)


@pytest.mark.slow
def test_import_quarantines_and_dbt_builds_one_row_per_item(loaded) -> None:
    settings, (s3rec, movielens), stages = loaded
    assert s3rec["items"]["rejected_reasons"] == {"not_a_list": 1} and s3rec["items"]["repeated_values"] == 1
    assert movielens["items"]["rejected_reasons"] == {"wrong_field_count": 1}
    build = stages["build"]
    assert build["tests_failed"] == 0
    assert build["rows"]["stg_lake__item_attributes"] == 10
    assert build["rows"]["dim_item_attributes"] == len(EXPECTED)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute("select item_id, attribute_values, n_attribute_values from dim_item_attributes").fetchall()
    assert {item: values for item, values, _ in rows} == EXPECTED
    assert all(n == len(values) for _, values, n in rows)


@pytest.mark.slow
def test_the_feature_view_serves_attributes_online_whatever_the_interval(loaded) -> None:
    settings, _, stages = loaded
    assert stages["exported"]["item_attributes"] == len(EXPECTED)
    assert stages["materialized"]["feature_views"]["item_attributes"] == {
        "rows": 5, "entities": 5, "written": 5, "replaced_future": 0}
    assert online_attributes(settings, ["10", "99", "nope"]) == {
        "10": EXPECTED["10"], "99": EXPECTED["99"], "nope": None}


@pytest.mark.slow
def test_point_in_time_reads_find_attributes_at_any_time(loaded) -> None:
    import pandas as pd

    settings, *_ = loaded
    store = feature_ops.feature_store(settings)
    entity_df = pd.DataFrame({"item_id": ["12", "500", "nope"],
                              "event_timestamp": [datetime(2001, 9, 9, tzinfo=timezone.utc), RUN_END, RUN_END]})
    df = store.get_historical_features(entity_df=entity_df, features=[
        "item_attributes:attribute_values", "item_attributes:n_attribute_values"]).to_df()
    rows = {r["item_id"]: r for r in df.to_dict("records")}
    assert list(rows["12"]["attribute_values"]) == EXPECTED["12"] and rows["12"]["n_attribute_values"] == 2
    assert list(rows["500"]["attribute_values"]) == EXPECTED["500"]
    assert rows["nope"]["attribute_values"] is None


@pytest.mark.slow
def test_training_reads_the_same_mart(loaded) -> None:
    from training.data import ItemVocabulary
    from training.item_side import ItemAttributes
    from training.item_table import load_item_attribute_mapping

    settings, *_ = loaded
    mapping = load_item_attribute_mapping(settings)
    assert mapping == EXPECTED
    attributes = ItemAttributes.from_mapping(ItemVocabulary(["10", "11", "13"]), mapping)
    assert attributes.n_attributes == 5  # the values of 10 and 11; 13 has none (quarantined)
    assert attributes.table[3].tolist() == [0] * 5


@pytest.mark.slow
def test_reimport_is_idempotent_and_a_changed_table_replaces_the_online_rows(loaded, tmp_path: Path) -> None:
    settings, imports, _ = loaded
    items = settings.lake_dir / "items"
    before = {p.name: p.read_bytes() for p in sorted(items.iterdir())}
    def without_paths(summaries: list[dict]) -> list[dict]:
        return [{k: v for k, v in s.items() if k != "source"}
                | {"items": {k: v for k, v in s["items"].items() if k != "source"}} for s in summaries]

    assert without_paths(import_both(settings, tmp_path, ITEMS_JSON)) == without_paths(imports)
    assert {p.name: p.read_bytes() for p in sorted(items.iterdir())} == before

    changed = dict(ITEMS_JSON, **{"11": [8], "13": [5]})
    import_both(settings, tmp_path, changed)
    stages = load_store(settings)
    assert stages["build"]["rows"]["dim_item_attributes"] == len(EXPECTED) + 1
    assert online_attributes(settings, ["11", "13", "10"]) == {
        "11": ["attribute:8"], "13": ["attribute:5"], "10": EXPECTED["10"]}


# ---------------------------------------------------------------- without dbt: the export and the static view


def add_item_mart(settings: Settings, rows: list[tuple[str, list[str]]]) -> None:
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("CREATE OR REPLACE TABLE dim_item_attributes "
                    "(item_id VARCHAR, attribute_values VARCHAR[], n_attribute_values BIGINT)")
        for item, values in rows:
            con.execute("INSERT INTO dim_item_attributes VALUES (?, ?, ?)", [item, values, len(values)])


def test_an_empty_item_table_exports_and_materializes_as_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    build_warehouse(settings)
    add_item_mart(settings, [])
    assert export_feature_data(settings)["item_attributes"] == 0
    table = pq.read_table(settings.feature_data_dir / feature_ops.ITEM_ATTRIBUTES_FILE)
    assert table.schema.field("attribute_values").type == pa.list_(pa.string())
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    apply_feature_repo(settings)
    summary = materialize(settings, DAY0, DAY3)
    assert summary["feature_views"]["item_attributes"] == {"rows": 0, "entities": 0, "written": 0,
                                                           "replaced_future": 0}


def _rematerialized(settings: Settings, project: str) -> tuple[dict, dict]:
    """Online attributes after a first load and after the mart changed (same epoch stamps)."""
    store = feature_ops.feature_store(settings, project=project)

    def read() -> dict:
        rows = store.get_online_features(features=["item_attributes:attribute_values"],
                                         entity_rows=[{"item_id": "i1"}, {"item_id": "i2"}]).to_dict()
        return dict(zip(rows["item_id"], rows["attribute_values"]))

    add_item_mart(settings, [("i1", ["brand:a"]), ("i2", ["brand:b", "color:red"])])
    export_feature_data(settings)
    apply_feature_repo(settings, project=project)
    materialize(settings, DAY0, DAY3, project=project, feature_views=["item_attributes"])
    first = read()
    add_item_mart(settings, [("i1", ["brand:c"])])
    export_feature_data(settings)
    materialize(settings, DAY3, DAY3 + timedelta(days=1), project=project, feature_views=["item_attributes"])
    return first, read()


def test_a_changed_item_table_replaces_the_online_rows_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    build_warehouse(settings)
    first, second = _rematerialized(settings, feature_ops.PROJECT)
    assert first == {"i1": ["brand:a"], "i2": ["brand:b", "color:red"]}
    # i2 is no longer in the table: like any entity, its online row stays.
    assert second == {"i1": ["brand:c"], "i2": ["brand:b", "color:red"]}


@pytest.mark.integration
def test_a_changed_item_table_replaces_the_online_rows_on_redis(tmp_path: Path) -> None:
    if not _redis_answers():
        pytest.skip("no Redis answering on 127.0.0.1:6379")
    settings = Settings(home=tmp_path / "home", feast_online_store="redis",
                        redis_connection_string="127.0.0.1:6379")
    build_warehouse(settings)
    project = f"recsys_test_{uuid.uuid4().hex[:12]}"
    try:
        first, second = _rematerialized(settings, project)
        assert first == {"i1": ["brand:a"], "i2": ["brand:b", "color:red"]}
        # The same epoch stamp again: Feast's Redis store alone would keep the old row.
        assert second["i1"] == ["brand:c"]
    finally:
        feature_ops.feature_store(settings, project=project).teardown()


@pytest.mark.slow
def test_the_nightly_split_carries_the_lake_item_table_for_its_vocabulary(loaded) -> None:
    from training.data import ItemVocabulary
    from training.protocol import night_item_attributes

    settings, _, _ = loaded
    vocab = ItemVocabulary(["10", "12", "777"])  # 777: an item the item table does not know
    side = night_item_attributes(settings, vocab)
    names = side.attribute_ids
    decoded = {item: [names[k - 1] for k in side.table[vocab.index(item)].tolist() if k]
               for item in ("10", "12", "777")}
    assert decoded == {"10": EXPECTED["10"], "12": EXPECTED["12"], "777": []}
    empty = Settings(home=settings.home.parent / "no-items")
    empty.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(empty.warehouse_path)).close()  # a warehouse built before the item mart
    assert night_item_attributes(empty, vocab) is None
