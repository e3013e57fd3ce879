"""Operations on the Feast repo in this folder: export, apply, materialize and online reads.

Every Feast object is configured from :class:`~core.settings.Settings` through
:func:`repo_config`, so the online store is SQLite or Redis by setting alone
(``Settings.feast_online_store``); ``feature_store.yaml`` mirrors the SQLite default for the
``feast`` CLI. ``.feastignore`` keeps this module out of ``feast apply``'s scan.

Feast, DuckDB and PyArrow are imported inside the functions: importing Feast takes seconds, and
callers such as DAG parsing or the export step should not pay for it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shlex
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from core.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

logger = logging.getLogger(__name__)

PROJECT = "recsys"
REPO_DIR = Path(__file__).resolve().parent
# Read by data_sources.py (sources are built when it is imported) and by feature_store.yaml.
FEATURE_DATA_DIR_ENV = "RECSYS_FEATURE_DATA_DIR"
FEAST_DIR_ENV = "RECSYS_FEAST_DIR"
USER_FEATURES_FILE = "user_features.parquet"
ITEM_FEATURES_FILE = "item_features.parquet"
TIMESTAMP_FIELD = "event_timestamp"
FEATURE_SERVICE = "recommendation_features"
USER_JOIN_KEY = "user_id"
# The push source of the user sequence view (features/push.py writes through it).
USER_EVENTS_PUSH_SOURCE = "user_events_push"
USER_SEQUENCE_VIEW = "user_recent_items"
RECENT_ITEMS_FEATURE = "recent_item_ids"
ENTITY_KEY_SERIALIZATION_VERSION = 3
# Socket timeout of the Redis clients of batch work (apply, materialize): long enough for a large
# pipeline's replies, short enough that a hung Redis fails the run instead of stalling it.
BATCH_REDIS_TIMEOUT_S = 60.0

# Imported in this order because each one builds on the objects of the previous ones.
_DEFINITION_MODULES = (
    "features.entities",
    "features.data_sources",
    "features.feature_views",
    "features.feature_services",
)

# Ids and counters are cast in SQL so that whatever integer width dbt produced (SUM gives
# HUGEINT) lands as the Int64 the feature views declare; rows are sorted so that exporting the
# same warehouse twice gives the same files.
_EXPORT_QUERIES = {
    "user_features": (
        USER_FEATURES_FILE,
        """
        SELECT CAST(user_id AS VARCHAR) AS user_id,
               CAST(feature_date AS DATE) AS feature_date,
               event_timestamp,
               CAST(recent_item_ids AS VARCHAR[]) AS recent_item_ids,
               CAST(n_events_total AS BIGINT) AS n_events_total,
               CAST(n_sessions_total AS BIGINT) AS n_sessions_total,
               CAST(n_purchases_total AS BIGINT) AS n_purchases_total
        FROM main.user_features
        ORDER BY user_id, event_timestamp
        """,
    ),
    "item_features": (
        ITEM_FEATURES_FILE,
        """
        SELECT CAST(item_id AS VARCHAR) AS item_id,
               CAST(feature_date AS DATE) AS feature_date,
               event_timestamp,
               CAST(n_events_1d AS BIGINT) AS n_events_1d,
               CAST(n_events_7d AS BIGINT) AS n_events_7d,
               CAST(n_users_7d AS BIGINT) AS n_users_7d
        FROM main.item_features
        ORDER BY item_id, event_timestamp
        """,
    ),
}


# ---------------------------------------------------------------- export


def export_feature_data(settings: Settings) -> dict[str, int]:
    """Copy the warehouse tables ``user_features`` and ``item_features`` to Parquet.

    The files land in ``settings.feature_data_dir`` with ``event_timestamp`` as a UTC timestamp.
    Each file is replaced atomically, so a concurrent reader (materialization, training) sees
    either the previous export or this one. Returns the row count per table.
    """
    import duckdb
    import pyarrow.parquet as pq

    if not settings.warehouse_path.is_file():
        raise FileNotFoundError(f"warehouse not found: {settings.warehouse_path} (run dbt first)")
    out_dir = settings.feature_data_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    counts: dict[str, int] = {}
    # Read-only: the export must never change the warehouse, and DuckDB lets several read-only
    # processes (this export, the quality gate) open the file at once.
    with contextlib.closing(duckdb.connect(str(settings.warehouse_path), read_only=True)) as con:
        for table_name, (file_name, query) in _EXPORT_QUERIES.items():
            table = con.sql(query).to_arrow_table()
            table = _with_utc_timestamp(table)
            target = out_dir / file_name
            tmp = target.with_name(f".{file_name}.{os.getpid()}.tmp")
            try:
                pq.write_table(table, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            counts[table_name] = table.num_rows
            logger.info("exported %s: %d rows -> %s", table_name, table.num_rows, target)
    return counts


def _with_utc_timestamp(table: Any) -> Any:
    """Return ``table`` with ``event_timestamp`` as ``timestamp[us, UTC]`` and plain list fields.

    The lake and the marts keep UTC; a naive warehouse timestamp is therefore read as UTC and a
    zoned one converted, so Feast's point-in-time joins compare instants, not wall clocks.
    """
    import pyarrow as pa

    fields = []
    for field in table.schema:
        if field.name == TIMESTAMP_FIELD:
            if not pa.types.is_timestamp(field.type):
                raise TypeError(f"{TIMESTAMP_FIELD} must be a timestamp, got {field.type}")
            fields.append(pa.field(field.name, pa.timestamp("us", tz="UTC")))
        elif pa.types.is_list(field.type):
            # DuckDB names the list child after the column; Arrow's default `item` keeps the
            # file schema independent of the SQL alias.
            fields.append(pa.field(field.name, pa.list_(field.type.value_type)))
        else:
            fields.append(field)
    return table.cast(pa.schema(fields))


# ---------------------------------------------------------------- configuration


def repo_config(
    settings: Settings,
    *,
    project: str = PROJECT,
    redis_batch: bool = False,
    redis_overwrite: bool = False,
) -> RepoConfig:
    """The Feast configuration for ``settings``: the single place the online store is chosen.

    Redis sockets time out (features/online_store.py): by default after
    ``settings.push_timeout_ms`` with no client retries (the request path: serving's reads and
    pushes); with ``redis_batch`` after ``BATCH_REDIS_TIMEOUT_S`` with redis-py's retries
    (apply, materialize). ``redis_overwrite`` turns off Feast's Redis rule that skips a write
    not newer than the stored row (materialization replaces a row stamped in the future).
    """
    from feast import RepoConfig

    from features.online_store import bounded_redis_connection_string

    if settings.feast_online_store == "sqlite":
        online_store: dict[str, Any] = {
            "type": "sqlite",
            "path": str(settings.feast_dir / "online_store.db"),
        }
    elif settings.feast_online_store == "redis":
        timeout_s = BATCH_REDIS_TIMEOUT_S if redis_batch else settings.push_timeout_ms / 1000.0
        online_store = {
            "type": "redis",
            "connection_string": bounded_redis_connection_string(
                settings.redis_connection_string, timeout_s, retries=redis_batch
            ),
            "skip_dedup": redis_overwrite,
        }
    else:
        raise ValueError(
            f"feast_online_store must be 'sqlite' or 'redis', got {settings.feast_online_store!r}"
        )
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(settings.feast_dir / "registry.db"),
        offline_store={"type": "file"},
        online_store=online_store,
        entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION,
        repo_path=REPO_DIR,
    )


def feature_store(
    settings: Settings,
    *,
    project: str = PROJECT,
    redis_batch: bool = False,
    redis_overwrite: bool = False,
) -> FeatureStore:
    """A FeatureStore on ``settings``' registry and online store.

    Building one reads the registry; long-lived callers (serving) build it once and pass it to
    :func:`read_user_features`. ``project`` exists so that tests sharing one Redis stay apart.
    A SQLite online store reopens its file when it is replaced or deleted while the store lives;
    Redis options: :func:`repo_config`.
    """
    from feast import FeatureStore

    from features.online_store import reopen_replaced_sqlite

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    config = repo_config(settings, project=project, redis_batch=redis_batch,
                         redis_overwrite=redis_overwrite)
    store = FeatureStore(repo_path=str(REPO_DIR), config=config)
    reopen_replaced_sqlite(getattr(store._get_provider(), "online_store", None))
    return store


def feast_cli_env(settings: Settings) -> dict[str, str]:
    """Environment variables feature_store.yaml and data_sources.py need for the ``feast`` CLI."""
    return {
        FEAST_DIR_ENV: str(settings.feast_dir),
        FEATURE_DATA_DIR_ENV: str(settings.feature_data_dir),
    }


# ---------------------------------------------------------------- apply


@contextlib.contextmanager
def _feature_data_dir_env(path: Path) -> Iterator[None]:
    # Restored afterwards so that one call's directory does not leak into later imports.
    previous = os.environ.get(FEATURE_DATA_DIR_ENV)
    os.environ[FEATURE_DATA_DIR_ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(FEATURE_DATA_DIR_ENV, None)
        else:
            os.environ[FEATURE_DATA_DIR_ENV] = previous


def _load_definitions(feature_data_dir: Path) -> list[Any]:
    """Import the definition modules with their sources pointing into ``feature_data_dir``.

    Not thread-safe: it sets a process environment variable and re-executes modules.
    """
    modules = []
    with _feature_data_dir_env(feature_data_dir):
        for name in _DEFINITION_MODULES:
            if name in sys.modules:
                # The sources captured the directory of the first import; a call for other
                # Settings (another home) must rebuild them and everything built on them.
                modules.append(importlib.reload(sys.modules[name]))
            else:
                modules.append(importlib.import_module(name))
    return modules


def _repo_contents(modules: list[Any], project: str) -> Any:
    """The definitions as Feast's RepoContents, collected like ``feast apply`` collects them."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource
    from feast.feature_view import DUMMY_ENTITY
    from feast.project import Project
    from feast.repo_contents import RepoContents

    found: dict[type, list[Any]] = {Entity: [], DataSource: [], FeatureView: [], FeatureService: []}
    for module in modules:
        for obj in vars(module).values():
            for kind, objects in found.items():
                # Identity, as in Feast's parse_repo: an object re-exported by another module
                # is the same definition, two equal objects are two definitions.
                if isinstance(obj, kind) and not any(obj is seen for seen in objects):
                    objects.append(obj)
    return RepoContents(
        projects=[Project(name=project)],
        data_sources=found[DataSource],
        feature_views=found[FeatureView],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[*found[Entity], DUMMY_ENTITY],
        feature_services=found[FeatureService],
        permissions=[],
    )


def apply_feature_repo(settings: Settings, *, project: str = PROJECT) -> list[str]:
    """Register the repo's definitions, as ``feast apply`` does; idempotent.

    Runs the CLI's own apply step on the definitions imported from this package, so registry
    diffs, deletions of objects no longer defined (with their online tables) and infrastructure
    updates are exactly the CLI's. Returns the registered objects as ``"<kind>:<name>"``, sorted.
    """
    from feast.feature_view import DUMMY_ENTITY_NAME
    from feast.repo_operations import apply_total_with_repo_instance

    repo = _repo_contents(_load_definitions(settings.feature_data_dir), project)
    store = feature_store(settings, project=project, redis_batch=True)
    apply_total_with_repo_instance(
        store, project, store.registry, repo, skip_source_validation=False
    )

    registered = (
        [f"data_source:{o.name}" for o in repo.data_sources]
        + [f"entity:{o.name}" for o in repo.entities if o.name != DUMMY_ENTITY_NAME]
        + [f"feature_view:{o.name}" for o in repo.feature_views]
        + [f"feature_service:{o.name}" for o in repo.feature_services]
    )
    return sorted(registered)


# ---------------------------------------------------------------- materialize


def materialize(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    project: str = PROJECT,
    feature_views: list[str] | None = None,
) -> dict[str, Any]:
    """Load every feature view's latest row per entity within ``[start, end)`` online.

    An explicit interval rather than ``materialize_incremental``: the incremental watermark is
    reset by ``feast apply`` (feast-dev/feast#2905), while the nightly run knows its interval,
    and a past interval can be re-run.

    Never rolls an entity back: a row is written only when its ``event_timestamp`` is at least
    the one stored online (Feast's SQLite store would overwrite a newer value when an older
    interval is re-materialized after a newer one, and a pushed, fresher list must survive a
    re-run of last night). An equal timestamp is rewritten, so a rebuilt mart corrects a row.
    A stored timestamp later than now + ``settings.max_future_skew_minutes`` is not trusted (no
    real event is stamped there; a bad clock or a poisoned push is): such a row is overwritten,
    on Redis past Feast's own newer-wins check, instead of freezing the entity for good.
    Each view is written with Feast's ``write_to_online_store`` in one batch: on SQLite one
    transaction, on Redis one HSET per entity, so a concurrent reader sees an entity's old row
    or its new one, never a mix.

    Returns ``{"start", "end", "online_store", "feature_views": {name: {"rows", "entities",
    "written", "replaced_future"}}}``: source rows in the interval, distinct entities among
    them, entities written, and of those the ones whose online row was stamped in the future.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (the data is in UTC)")
    if start >= end:
        raise ValueError(f"empty interval: start {start} is not before end {end}")

    store = feature_store(settings, project=project, redis_batch=True)
    views = store.list_feature_views()
    if not views:
        raise RuntimeError(f"no feature views in project {project}: apply the repo first")
    if feature_views is not None:
        views = [view for view in views if view.name in set(feature_views)]

    trusted_until = datetime.now(timezone.utc) + timedelta(minutes=settings.max_future_skew_minutes)
    overwriting_store = None
    summary = {}
    for view in sorted(views, key=lambda v: v.name):
        rows, latest = _latest_rows(view, start, end)
        fresh, over_future = _not_older_than_online(store, view, latest, trusted_until)
        if len(fresh):
            store.write_to_online_store(view.name, fresh, allow_registry_cache=True)
        if len(over_future):
            logger.warning("%s: %d entities had an online row stamped after %s; overwriting it",
                           view.name, len(over_future), trusted_until.isoformat())
            if store.config.online_store.type == "redis" and overwriting_store is None:
                overwriting_store = feature_store(settings, project=project, redis_overwrite=True,
                                                  redis_batch=True)
            # SQLite's write replaces whatever is stored; Redis needs its newer-wins check off.
            (overwriting_store or store).write_to_online_store(
                view.name, over_future, allow_registry_cache=True)
        summary[view.name] = {"rows": rows, "entities": len(latest),
                              "written": len(fresh) + len(over_future),
                              "replaced_future": len(over_future)}
        logger.info("materialized %s [%s, %s): %s", view.name, start, end, summary[view.name])
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "online_store": store.config.online_store.type,
        "feature_views": summary,
    }


def _latest_rows(view: Any, start: datetime, end: datetime) -> tuple[int, Any]:
    """(source rows of ``view`` in ``[start, end)``, a DataFrame of the latest row per entity)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from feast import FileSource

    source = view.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"{view.name}: expected a FileSource, got {type(source).__name__}")
    join_keys = [column.name for column in view.entity_columns]
    features = [feature.name for feature in view.features]
    table = pq.read_table(source.path, columns=[*join_keys, TIMESTAMP_FIELD, *features])
    ts = table.column(TIMESTAMP_FIELD)
    in_interval = pc.and_(
        pc.greater_equal(ts, pa.scalar(start, type=ts.type)),
        pc.less(ts, pa.scalar(end, type=ts.type)),
    )
    rows = table.filter(in_interval)
    frame = rows.to_pandas()
    if frame.empty:
        return 0, frame
    # Stable sort: of two rows of one entity with one timestamp the later file row wins, as in
    # Feast's own materialization.
    latest = (
        frame.sort_values(TIMESTAMP_FIELD, kind="stable")
        .drop_duplicates(subset=join_keys, keep="last")
        .reset_index(drop=True)
    )
    return rows.num_rows, latest


def _entity_key(join_keys: list[str], values: list[Any]) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=join_keys, entity_values=[Value(string_val=str(v)) for v in values])


def _utc(ts: Any) -> datetime | None:
    if ts is None:
        return None
    if hasattr(ts, "to_pydatetime"):
        ts = ts.to_pydatetime()
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def online_timestamps(store: FeatureStore, view: Any, keys: list[list[Any]]) -> list[datetime | None]:
    """The event timestamp stored online for each entity key of ``view`` (None: no row)."""
    if not keys:
        return []
    join_keys = [column.name for column in view.entity_columns]
    entity_keys = [_entity_key(join_keys, values) for values in keys]
    rows = store._get_provider().online_read(
        config=store.config, table=view, entity_keys=entity_keys
    )
    return [_utc(ts) if values else None for ts, values in rows]


def _not_older_than_online(
    store: FeatureStore, view: Any, latest: Any, trusted_until: datetime
) -> tuple[Any, Any]:
    """(rows to write as usual, rows replacing an online row stamped after ``trusted_until``);
    a row older than a trusted online row is in neither."""
    if latest.empty:
        return latest, latest
    join_keys = [column.name for column in view.entity_columns]
    keys = latest[join_keys].astype(str).values.tolist()
    stored = online_timestamps(store, view, keys)
    keep, over_future = [], []
    for row_ts, online in zip(latest[TIMESTAMP_FIELD], stored):
        untrusted = online is not None and online > trusted_until
        keep.append(not untrusted and (online is None or _utc(row_ts) >= online))
        over_future.append(untrusted)
    return latest[keep].reset_index(drop=True), latest[over_future].reset_index(drop=True)


# ---------------------------------------------------------------- online reads


def read_user_features(
    settings_or_store: Settings | FeatureStore,
    user_ids: list[str],
    *,
    project: str = PROJECT,
) -> dict[str, dict[str, Any] | None]:
    """Online features of the ``recommendation_features`` service for each user.

    Pass a FeatureStore built once with :func:`feature_store` on a request path; a Settings
    builds a new one per call. A user without any feature online maps to ``None``, so the
    caller can fall back to popular items. ``project`` only applies to a Settings.
    """
    if isinstance(settings_or_store, Settings):
        store = feature_store(settings_or_store, project=project)
    else:
        store = settings_or_store
    unique_ids = list(dict.fromkeys(user_ids))
    if not unique_ids:
        return {}

    service = store.get_feature_service(FEATURE_SERVICE, allow_cache=True)
    response = store.get_online_features(
        features=service,
        entity_rows=[{USER_JOIN_KEY: user_id} for user_id in unique_ids],
    ).to_dict()
    feature_names = [name for name in response if name != USER_JOIN_KEY]

    result: dict[str, dict[str, Any] | None] = {}
    for i, user_id in enumerate(response[USER_JOIN_KEY]):
        values = {name: response[name][i] for name in feature_names}
        result[user_id] = values if any(v is not None for v in values.values()) else None
    return result


class UserFeatureReader:
    """:func:`read_user_features`' result, read through the online store's ``online_read``.

    The same keys, serialization and values as ``get_online_features`` on the
    ``recommendation_features`` service, without its per-request planning (registry lookups,
    entity resolution, response building): the service's views are resolved once, when the
    reader is built, and each read is one ``online_read`` per view. Build one per FeatureStore
    (and again after ``apply`` changes the views). benchmarks/feature_latency.py measures both.
    """

    def __init__(self, store: FeatureStore):
        service = store.get_feature_service(FEATURE_SERVICE, allow_cache=True)
        self._store = store
        self._provider = store._get_provider()
        self._views = [
            (store.get_feature_view(p.name, allow_registry_cache=True), [f.name for f in p.features])
            for p in service.feature_view_projections
        ]

    @property
    def reads_async(self) -> bool:
        """Whether the online store reads natively on an event loop (Feast's Redis store does)."""
        online_store = getattr(self._provider, "online_store", None)
        supported = getattr(online_store, "async_supported", None)
        return bool(supported is not None and supported.read)

    def read(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        unique_ids, keys = self._keys(user_ids)
        per_view = [
            self._provider.online_read(
                # a copy: the Redis store appends its timestamp field to the list it is given
                config=self._store.config, table=view, entity_keys=keys, requested_features=list(names)
            )
            for view, names in self._views
        ] if keys else []
        return self._decode(unique_ids, per_view)

    async def aread(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """:meth:`read` on the caller's event loop (``online_read_async``), for stores with
        :attr:`reads_async`: no worker thread per request, and cancelling it (a timeout) is clean."""
        unique_ids, keys = self._keys(user_ids)
        per_view = [
            await self._provider.online_read_async(
                config=self._store.config, table=view, entity_keys=keys, requested_features=list(names)
            )
            for view, names in self._views
        ] if keys else []
        return self._decode(unique_ids, per_view)

    @staticmethod
    def _keys(user_ids: list[str]) -> tuple[list[str], list]:
        unique_ids = list(dict.fromkeys(user_ids))
        return unique_ids, [_entity_key([USER_JOIN_KEY], [u]) for u in unique_ids]

    def _decode(self, unique_ids: list[str], per_view: list[list]) -> dict[str, dict[str, Any] | None]:
        from feast.type_map import feast_value_type_to_python_type

        result: dict[str, dict[str, Any]] = {u: {} for u in unique_ids}
        for (_, names), rows in zip(self._views, per_view):
            for user_id, (_, values) in zip(unique_ids, rows):
                for name in names:
                    value = (values or {}).get(name)
                    result[user_id][name] = (
                        None if value is None else feast_value_type_to_python_type(value)
                    )
        return {
            u: (values if any(v is not None for v in values.values()) else None)
            for u, values in result.items()
        }


def read_user_features_direct(
    store: FeatureStore, user_ids: list[str]
) -> dict[str, dict[str, Any] | None]:
    """One-off :class:`UserFeatureReader` read (a request path keeps the reader instead)."""
    return UserFeatureReader(store).read(user_ids)


def main(argv: list[str] | None = None) -> int:
    """``python -m features.store env``: print the CLI's environment as shell exports."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["env"]:
        print("usage: python -m features.store env", file=sys.stderr)
        return 2
    for name, value in feast_cli_env(Settings.from_env()).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
