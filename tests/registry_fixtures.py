"""Registry set-ups for tests that need a champion without running a night's promotion.

Serving loads only versions that carry a signed decision record that passed
(:mod:`registry.decision_record`), so a test that used to move the ``champion`` alias by hand
uses :func:`promote_for_test` instead: it writes a genuine signed record for the version's real
checkpoint, saying plainly that a test fixture (not the promotion checks) passed it, and then
moves the alias, in the order :func:`registry.promotion.apply_decision` uses.

:func:`registry_template` / :func:`start_from_template` save a test the creation and migration of
a new MLflow database (seconds each on a busy CI box): an empty, migrated SQLite store is made
once per session and copied into each test's home. It is MLflow's real store all the same; the
experiment and its artifact location are created in the copy, under the test's own home.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.settings import Settings

FIXTURE_CHECK = "promoted_by_test_fixture"


def promote_for_test(settings: Settings, version: str | int, client=None) -> dict:
    """Make ``version`` the champion as if a night had promoted it; returns the signed record."""
    from registry.decision_record import artifact_digest, build_record, write_record
    from registry.versions import download_registered_checkpoint
    from training.tracking import mlflow_client

    client = client or mlflow_client(settings)
    name, version = settings.registered_model_name, str(version)
    digest = artifact_digest(download_registered_checkpoint(settings, version, client))
    record = write_record(settings, client, build_record(
        settings, version, action="promotion", passed=True, artifact_sha256=digest,
        checks=[{"name": FIXTURE_CHECK, "passed": True}],
        run_id=client.get_model_version(name, version).run_id, run_date="",
    ))
    client.set_registered_model_alias(name, settings.champion_alias, version)
    client.set_model_version_tag(name, version, "promoted_at", datetime.now(timezone.utc).isoformat())
    return record


def _sqlite_path(settings: Settings) -> Path:
    if not settings.mlflow_uri.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite MLflow store: {settings.mlflow_uri}")
    return Path(settings.mlflow_uri.removeprefix("sqlite:///"))


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with every migration applied."""
    from training.tracking import mlflow_client

    template = Settings(home=tmp_path_factory.mktemp("registry_template"))
    mlflow_client(template).search_experiments()  # creates and migrates the database
    return _sqlite_path(template)


def start_from_template(settings: Settings, template: Path) -> Settings:
    """Give ``settings`` (a home with no registry yet) a copy of the migrated empty database."""
    target = _sqlite_path(settings)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return settings
