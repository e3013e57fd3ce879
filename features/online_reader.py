"""Reads of the online store: a user's features for serving and promotion, and the timestamps
materialization compares against.

:func:`read_user_features` goes through Feast's ``get_online_features`` on the
``recommendation_features`` service; :class:`UserFeatureReader` returns the same through the
online store's ``online_read`` with the service resolved once (the API's request path).
Feast is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from features.store import FEATURE_SERVICE, PROJECT, USER_JOIN_KEY, feature_store

if TYPE_CHECKING:
    from feast import FeatureStore


def entity_key(join_keys: list[str], values: list[Any]) -> Any:
    """Feast's EntityKey for string ids ``values`` of ``join_keys`` (the repo has no other keys)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=join_keys, entity_values=[Value(string_val=str(v)) for v in values])


def as_utc(ts: Any) -> datetime | None:
    """``ts`` (a datetime or pandas Timestamp; naive means UTC) as an aware UTC datetime."""
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
    entity_keys = [entity_key(join_keys, values) for values in keys]
    rows = store._get_provider().online_read(
        config=store.config, table=view, entity_keys=entity_keys
    )
    return [as_utc(ts) if values else None for ts, values in rows]


def read_user_features(
    settings_or_store: Settings | FeatureStore,
    user_ids: list[str],
    *,
    project: str = PROJECT,
) -> dict[str, dict[str, Any] | None]:
    """Online features of the ``recommendation_features`` service for each user.

    Pass a FeatureStore built once with :func:`features.store.feature_store` on a request path;
    a Settings builds a new one per call. A user without any feature online maps to ``None``, so
    the caller can fall back to popular items. ``project`` only applies to a Settings.
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
        return unique_ids, [entity_key([USER_JOIN_KEY], [u]) for u in unique_ids]

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
