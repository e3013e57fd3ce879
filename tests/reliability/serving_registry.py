"""A real MLflow registry (SQLite under the test's home) holding two tiny registered versions,
for the serving trust and last-good tests. Versions are popularity models trained on a small ring
log (cheap), on two different nights so their checkpoints differ."""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from core.settings import Settings

NIGHTS = (date(2026, 11, 10), date(2026, 11, 11))


def write_ring_log(settings: Settings, n_users: int = 120, n_items: int = 30, seed: int = 0) -> None:
    """``user_sequences`` (and the sessionized events) as dbt builds them: users walk a ring."""
    import duckdb

    from tests.warehouse_fixtures import SESSIONIZED_FROM_USER_SEQUENCES

    rng = random.Random(seed)
    end = datetime(2026, 11, 11, 23, 0)
    rows = []
    for u in range(n_users):
        start, length = rng.randrange(n_items), rng.randint(8, 14)
        last = end - timedelta(hours=rng.uniform(0, 30))
        times = [last - timedelta(hours=12 * (length - 1 - k)) for k in range(length)]
        rows.append((f"user_{u:04d}", [f"item_{(start + k) % n_items:03d}" for k in range(length)], times))
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("CREATE TABLE user_sequences (user_id VARCHAR, item_ids VARCHAR[], event_times TIMESTAMP[], "
                    "n_events BIGINT, first_event_time TIMESTAMP, last_event_time TIMESTAMP)")
        con.executemany("INSERT INTO user_sequences VALUES (?, ?, ?, len(?), list_min(?), list_max(?))",
                        [(u, i, t, i, t, t) for u, i, t in rows])
        con.execute(SESSIONIZED_FROM_USER_SEQUENCES)


def _db(settings: Settings) -> Path:
    return Path(settings.mlflow_uri.removeprefix("sqlite:///"))


_TEMPLATE: list[Settings] = []


def template_home() -> Settings:
    """An MLflow SQLite database with its tables created (the migrations take seconds) and the
    warehouse: built once per test session, then copied into each test's home."""
    from training.tracking import mlflow_client

    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="recsys-serving-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        settings = Settings(home=folder)
        mlflow_client(settings).search_experiments()
        write_ring_log(settings)
        _TEMPLATE.append(settings)
    return _TEMPLATE[0]


def two_versions(home: Path, template: Settings, **overrides) -> Settings:
    """Settings whose registry holds v1 and v2 (no alias, no decision record yet)."""
    from training.tracking import train_and_log

    settings = Settings(home=home, max_sequence_length=20, seed=7, min_eval_examples=20,
                        champion_poll_seconds=0, decision_signing_key="test-signing-key").replace(**overrides)
    for source, target in ((_db(template), _db(settings)), (template.warehouse_path, settings.warehouse_path)):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    for night in NIGHTS:
        train_and_log(settings, night, "popularity", epochs=1)
    assert artifact_path(settings, "1").read_bytes() != artifact_path(settings, "2").read_bytes()
    return settings


def artifact_path(settings: Settings, version: str) -> Path:
    """The registered checkpoint file itself (in the artifact store, not a downloaded copy)."""
    from training.tracking import CHECKPOINT_FILE, mlflow_client

    source = mlflow_client(settings).get_model_version_download_uri(settings.registered_model_name, version)
    path = Path(urlparse(source).path) / CHECKPOINT_FILE
    assert path.is_file(), path
    return path


def move_alias_by_hand(settings: Settings, version: str) -> None:
    """What anyone who can reach MLflow can do: point the alias, no checks, no record."""
    from training.tracking import mlflow_client

    mlflow_client(settings).set_registered_model_alias(
        settings.registered_model_name, settings.champion_alias, version)


def truncate_artifact(settings: Settings, version: str) -> None:
    path = artifact_path(settings, version)
    path.write_bytes(path.read_bytes()[:100])


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    """Poll ``predicate``; the bound is a hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def metric_lines(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name):]] = float(value)
    return out
