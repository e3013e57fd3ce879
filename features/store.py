"""The Feast repo's names and the FeatureStore every operation works on, built from Settings.

Every Feast object is configured from :class:`~core.settings.Settings` through
:func:`repo_config`, so the online store is SQLite or Redis by setting alone
(``Settings.feast_online_store``); ``feature_store.yaml`` mirrors the SQLite default for the
``feast`` CLI and ``python -m features.store env`` prints the variables that file needs.
The operations live next to this module: ``export`` (warehouse to Parquet), ``definitions``
(building and applying the repo's objects), ``materialize`` and ``online_reader``.

Feast is imported inside the functions: importing it takes seconds, and callers such as DAG
parsing or the export step should not pay for it.
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

PROJECT = "recsys"
REPO_DIR = Path(__file__).resolve().parent
# Substituted by Feast into feature_store.yaml when the `feast` CLI loads it.
FEAST_DIR_ENV = "RECSYS_FEAST_DIR"
USER_FEATURES_FILE = "user_features.parquet"
ITEM_FEATURES_FILE = "item_features.parquet"
ITEM_ATTRIBUTES_FILE = "item_attributes.parquet"
ITEM_ATTRIBUTES_VIEW = "item_attributes"
# The timestamp of every row of a view without expiry (ttl 0: the item attributes). An item
# table is a snapshot with no history, valid at every time: stamped at the epoch, its rows join
# any entity time in point-in-time reads, and materialization loads them whole every run
# (features.materialize), so a re-imported table replaces the online rows.
STATIC_FEATURE_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
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
    the readers of :mod:`features.online_reader`. ``project`` exists so that tests sharing one
    Redis stay apart. A SQLite online store reopens its file when it is replaced or deleted
    while the store lives; Redis options: :func:`repo_config`.
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
    """Environment variables the ``feast`` CLI needs for ``settings``: the directory
    feature_store.yaml substitutes, and the home cli_definitions.py reads through
    ``Settings.from_env()``, absolute because the CLI changes into features/ before importing."""
    return {
        Settings.env_names()["home"]: str(settings.home),
        FEAST_DIR_ENV: str(settings.feast_dir),
    }


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
