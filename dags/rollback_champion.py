"""Manual Airflow DAG: move the serving champion back to an earlier registered version.

This file only wires tasks; the work is ``pipeline.stages.rollback_champion``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

DOC = """
### Roll the champion back

Triggered by hand (no schedule). Moves the MLflow registry alias `champion` to the version given
in the `version` param, or to the latest earlier version that was champion when `version` is
empty. The target must exist and must load and answer a smoke request through the serving code
path, otherwise the task **fails** and the alias stays where it was. Every attempt is recorded in
`$RECSYS_HOME/decisions/rollback-<timestamp>.json`. Running APIs follow within
`RECSYS_CHAMPION_POLL_SECONDS` (or at once after `POST /admin/reload`).

Same as `python -m registry.rollback --version N` / `--to-previous`.
"""


@dag(
    dag_id="rollback_champion",
    description="Move the champion alias back to an earlier model version (manual)",
    doc_md=DOC,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "serving", "rollback", "manual"],
    default_args={"owner": "recsys-platform", "retries": 0},
    params={
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="Registered model version to serve. Empty: the previous champion.",
        ),
        "reason": Param("", type="string", title="Reason", description="Kept in the rollback record."),
    },
)
def rollback_champion():
    @task
    def rollback() -> dict:
        from pipeline import stages
        from core.settings import Settings

        params = get_current_context()["params"]
        version = params.get("version")
        return stages.rollback_champion(
            Settings.from_env(), None if version in (None, "") else int(version), reason=params.get("reason") or ""
        )

    rollback()


rollback_champion()
