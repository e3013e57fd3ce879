"""Registered model versions: which one the champion alias names, downloading a version's
checkpoint, and loading it as a :class:`training.recommender.Recommender`.

Serving, promotion and rollback load models only through here, so every consumer above the
registry sees one path from the MLflow registry to a model that answers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core.settings import Settings
from training.recommender import Recommender, load_recommender
from training.tracking import CHECKPOINT_FILE, mlflow_client

__all__ = [
    "ModelLoadError", "Recommender", "champion_version", "download_registered_checkpoint",
    "load_champion", "load_recommender", "load_registered_version", "mlflow_client",
]


class ModelLoadError(RuntimeError):
    """A registered version exists but could not be downloaded, loaded or answer a request."""


def champion_version(settings: Settings, client=None) -> str | None:
    """The version the registry's champion alias points at, or None (no model, no alias)."""
    from mlflow.exceptions import MlflowException

    client = client or mlflow_client(settings)
    try:
        return str(client.get_model_version_by_alias(
            settings.registered_model_name, settings.champion_alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def download_registered_checkpoint(settings: Settings, version: str | int, client=None) -> Path:
    """Download registered ``version``'s checkpoint file and return its local path."""
    import mlflow.artifacts

    client = client or mlflow_client(settings)
    name = settings.registered_model_name
    # MLflow resolves ``models:/`` URIs through the process-global registry URI whatever
    # ``registry_uri`` is passed, so the version's download URI is resolved with this
    # settings' client instead: the same lookup ``models:/<name>/<version>`` does.
    source = client.get_model_version_download_uri(name, str(version))
    dst = settings.models_dir / "registry" / name / str(version)
    dst.mkdir(parents=True, exist_ok=True)
    # Into a private folder, then each file renamed into place: processes loading the same
    # version at once (API workers) never read a file another one is still writing.
    private = Path(tempfile.mkdtemp(prefix=".download-", dir=dst))
    try:
        fetched = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(private), tracking_uri=settings.mlflow_uri
        ))
        local = dst / fetched.relative_to(private)
        for path in [fetched] if fetched.is_file() else sorted(p for p in fetched.rglob("*") if p.is_file()):
            target = local / path.relative_to(fetched) if path != fetched else local
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return local / CHECKPOINT_FILE if local.is_dir() else local


def load_registered_version(settings: Settings, version: str | int, client=None,
                            smoke_test: bool = True) -> Recommender:
    """Download registered ``version``'s checkpoint and load it: the one path by which serving,
    promotion and rollback load a model. Raises :class:`ModelLoadError` when it cannot serve."""
    name = settings.registered_model_name
    try:
        recommender = load_recommender(download_registered_checkpoint(settings, version, client))
        if smoke_test:
            recommender.smoke_test()
    except Exception as exc:  # noqa: BLE001 - whatever broke, this version cannot serve
        raise ModelLoadError(f"{name} v{version} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return recommender


def load_champion(settings: Settings) -> tuple[Recommender, str] | None:
    """The registry's ``champion`` version as a Recommender, or None when there is none yet."""
    client = mlflow_client(settings)
    # Resolve once and load that version: the alias may move between two calls, and the
    # version reported must be the one loaded.
    version = champion_version(settings, client)
    if version is None:
        return None
    return load_registered_version(settings, version, client, smoke_test=False), version
