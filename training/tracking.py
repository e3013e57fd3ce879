"""MLflow tracking: the client every stage uses, the experiment runs are logged to, and the
registered model versions are created under.

The client is built from :class:`core.settings.Settings` only (tracking and registry URI alike),
so a process never depends on MLflow's process-global URI.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings

EXPERIMENT_NAME = "nightly_recsys"
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"


def mlflow_client(settings: Settings):
    from mlflow import MlflowClient

    if settings.mlflow_uri.startswith("sqlite:///"):
        # SQLite creates the database file but not its folder.
        Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def get_or_create_experiment(client, settings: Settings, name: str = EXPERIMENT_NAME) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
    # An explicit location keeps artifacts under $RECSYS_HOME, not under the process's cwd.
    return client.create_experiment(name, artifact_location=settings.mlflow_artifact_root.as_uri())


def ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.create_registered_model(
            name, description="Next-item recommender; alias `champion` marks the serving version."
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # created concurrently: fine
            raise
