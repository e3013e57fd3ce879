"""MLflow tracking: the client every stage uses, the experiment runs are logged to, the
registered model versions are created under, and the nightly training stage that logs to them.

The client is built from :class:`core.settings.Settings` only (tracking and registry URI alike),
so a process never depends on MLflow's process-global URI.

:func:`train_and_log` is the nightly stage: split the warehouse, train the popularity baseline
and the candidate, log both to one MLflow run and register the candidate's checkpoint as a new
version. Importing this module loads neither MLflow nor torch (the registry imports it too).
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

from core.settings import Settings
from training.config import TrainConfig

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


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in values.items()}


def train_and_log(
    settings: Settings,
    run_date: date | str,
    model_name: str = "sasrec",
    epochs: int | None = None,
    *,
    train_config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    protocol: str | None = None,
    test_days: float | None = None,
    val_days: float | None = None,
    exclude_seen: str | bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Nightly training stage; returns a JSON-serialisable summary (the DAG's XCom).

    ``epochs`` and keyword ``overrides`` (``batch_size=``, ``lr=``, ...) replace fields of
    ``train_config`` (default ``TrainConfig()``). ``model_name="auto"`` trains every model of
    ``settings.auto_models`` and keeps the best on validation (:mod:`training.auto`). The split's
    protocol, windows and seen-item rule come from the log (:mod:`training.protocol`) unless given.
    """
    from mlflow.entities import Metric, Param, RunTag

    from training.auto import AUTO, auto_model_names, select_on_validation
    from training.models import model_classes
    from training.protocol import load_split as load_night_split
    from training.train import train_model

    tc = (train_config or TrainConfig()).with_overrides(epochs=epochs, **overrides)
    if not tc.min_val_examples:
        tc = tc.with_overrides(min_val_examples=settings.min_eval_examples)
    requested = model_name
    if model_name == AUTO:
        names = auto_model_names(settings.auto_models)
    else:
        model_classes(model_name)  # an unknown name fails here, before any data is read
        names = [model_name]
    run_date = run_date.isoformat() if isinstance(run_date, date) else str(run_date)
    split = load_night_split(settings, as_of=run_date, protocol=protocol, test_days=test_days,
                             val_days=val_days, exclude_seen=exclude_seen)
    client = mlflow_client(settings)
    experiment_id = get_or_create_experiment(client, settings)
    run = client.create_run(
        experiment_id,
        run_name=f"{model_name}-{run_date}",
        tags={"run_date": run_date, "model_name": model_name, "stage": "train_candidate"},
    )
    run_id = run.info.run_id
    try:
        out_dir = settings.models_dir / run_date / run_id
        baseline = train_model(
            settings, split, "popularity", TrainConfig(epochs=1, device=tc.device, seed=tc.seed),
            checkpoint_path=out_dir / "popularity" / CHECKPOINT_FILE,
        )
        result, candidates = select_on_validation(
            names,
            lambda name, path: train_model(settings, split, name, tc, model_config=model_config,
                                           checkpoint_path=path),
            out_dir / "candidates", tc.selection_metric,
        )
        model_name = result.model_name
        client.set_tag(run_id, "model_name", model_name)
        epochs = tc.epochs
        seed = settings.seed if tc.seed is None else tc.seed

        now = int(time.time() * 1000)
        params = {
            **_flat("train.", {k: v for k, v in tc.to_dict().items() if v is not None}),
            "model_name": model_name, "requested_model": requested, "run_date": run_date, "epochs": epochs,
            "batch_size": tc.batch_size, "lr": tc.lr, "weight_decay": tc.weight_decay,
            "patience": tc.patience, "seed": seed, "device": result.device,
            "selection_metric": f"val_{tc.selection_metric}",
            **_flat("model.", result.config),
            **_flat("split.", {k: v for k, v in split.info().items()
                               if not k.startswith("n_") and not isinstance(v, dict)}),
        }
        metrics = {
            **result.test_metrics,
            **result.test_extra,
            **_flat("val_", result.val_metrics),
            **_flat("popularity_", baseline.test_metrics),
            **_flat("popularity_val_", baseline.val_metrics),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "train_seconds": result.train_seconds,
            **{k: v for k, v in split.info().items() if k.startswith("n_") and isinstance(v, (int, float))},
            **{f"auto_{row['model']}_val_{tc.selection_metric}": row[f"val_{tc.selection_metric}"]
               for row in candidates if row["status"] == "trained" and requested == AUTO},
        }
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        # Curves, one point per epoch, under their own keys: ``val_ndcg_at_10`` above is the
        # selected checkpoint's, and sharing its key would make MLflow show the last epoch's.
        for row in result.history:
            batch.append(Metric("train_loss", row["train_loss"], now, int(row["epoch"])))
            batch.append(Metric(f"epoch_val_{tc.selection_metric}", row[f"val_{tc.selection_metric}"], now,
                                int(row["epoch"])))
        client.log_batch(
            run_id,
            metrics=batch,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("local_checkpoint_path", str(result.checkpoint_path))],
        )
        client.log_dict(run_id, split.info(), "split.json")
        client.log_dict(run_id, {"history": result.history}, "history.json")
        client.log_artifact(run_id, str(result.checkpoint_path), artifact_path=CHECKPOINT_ARTIFACT_DIR)

        ensure_registered_model(client, settings.registered_model_name)
        version = client.create_model_version(
            settings.registered_model_name,
            source=f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT_DIR}",
            run_id=run_id,
            tags={"run_date": run_date, "model_name": model_name,
                  f"test_{tc.selection_metric}": f"{result.test_metrics[tc.selection_metric]:.6f}"},
            description=f"{model_name} trained on data up to {split.val_start.isoformat()} "
                        f"(run {run_date})",
        )
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise

    return {
        "run_id": run_id,
        "run_date": run_date,
        "model_name": model_name,
        "registered_model_name": settings.registered_model_name,
        "model_version": str(version.version),
        "metrics": result.test_metrics,
        "val_metrics": result.val_metrics,
        "baseline_metrics": baseline.test_metrics,
        "checkpoint_path": str(result.checkpoint_path),
        "artifact_uri": f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT_DIR}",
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_by": result.stopped_by,
        "device": result.device,
        "requested_model": requested,
        "candidates": candidates,
        "protocol": split.info()["protocol"],
        "exclude_seen": split.exclude_seen,
        "test_days": split.info()["test_days"],
        "val_days": split.info()["val_days"],
        "split": split.info(),
        "n_train_sequences": len(split.train_sequences),
        "n_val_examples": len(split.val_examples),
        "n_test_examples": len(split.test_examples),
        "n_items": split.vocab.n_items,
    }
