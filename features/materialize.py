"""Materialization: the exported Parquet's latest row per entity written to the online store.

Feast and PyArrow are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from features.online_reader import as_utc, online_timestamps
from features.store import PROJECT, STATIC_FEATURE_TIME, TIMESTAMP_FIELD, feature_store

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)


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
    or its new one, never a mix. On Redis, ``settings.feast_materialize_route`` ("auto": bulk
    where supported) writes the same rows through :mod:`features.bulk_materialize` instead:
    the same keys, values, rules and summary, encoded a column at a time.

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
    # Views without expiry (item attributes) load whole, whatever the interval: _load_static.
    for view in [view for view in views if is_static(view)]:
        summary[view.name] = _load_static(settings, store, view, end, project)
    views = [view for view in views if view.name not in summary]
    if settings.feast_materialize_route != "standard":
        from features.bulk_materialize import bulk_materialize, bulk_views

        chosen = bulk_views(settings.feast_materialize_route, store, views)
        if chosen:
            summary.update(bulk_materialize(store, chosen, start, end, trusted_until))
    for view in sorted(views, key=lambda v: v.name):
        if view.name in summary:
            continue
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
        "feature_views": dict(sorted(summary.items())),
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
        keep.append(not untrusted and (online is None or as_utc(row_ts) >= online))
        over_future.append(untrusted)
    return latest[keep].reset_index(drop=True), latest[over_future].reset_index(drop=True)


def is_static(view: Any) -> bool:
    """A view without expiry (Feast's ttl 0 or none): descriptors valid at every time."""
    return not view.ttl


def _load_static(settings: Settings, store: FeatureStore, view: Any, end: datetime, project: str) -> dict[str, int]:
    """Write every entity's latest row of a static view (stamped ``STATIC_FEATURE_TIME``, so up
    to ``end`` means all of them), replacing what is stored.

    A nightly interval never holds the epoch stamp, yet an item table imported at any time must
    reach the online store, and a re-import must replace it: its rows carry the same stamp, which
    Feast's Redis store would skip as not newer, so Redis is written with that check off. Items
    no longer in the table keep their online row, as entities of the other views do.
    """
    rows, latest = _latest_rows(view, STATIC_FEATURE_TIME, end)
    if len(latest):
        writer = store
        if store.config.online_store.type == "redis":
            writer = feature_store(settings, project=project, redis_overwrite=True, redis_batch=True)
        writer.write_to_online_store(view.name, latest, allow_registry_cache=True)
    summary = {"rows": rows, "entities": len(latest), "written": len(latest), "replaced_future": 0}
    logger.info("materialized static view %s (whole table up to %s): %s", view.name, end, summary)
    return summary
