"""Run the nightly DAG once, in this process, through Airflow's own ``dag.test()``.

Used by the demo and the end-to-end test: the DAG is parsed from ``dags/`` by a real DagBag
and every task runs with Airflow's task runner against the metadata database named by the
environment (see :mod:`pipeline.airflow_env`; run ``airflow db migrate`` first).

    python -m pipeline.run_dag --date 2026-11-20 --model sasrec --epochs 20
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

from pipeline.settings import REPO_ROOT

DAG_ID = "nightly_recsys"


def run_nightly(run_date: date, model: str = "sasrec", epochs: int = 20) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    if dagbag.import_errors:
        raise RuntimeError(f"DAG import errors: {dagbag.import_errors}")
    dag = dagbag.dags[DAG_ID]
    dag_run = dag.test(run_conf={"date": run_date.isoformat(), "model": model, "epochs": epochs})
    return {
        "dag_id": DAG_ID,
        "run_date": run_date.isoformat(),
        "state": str(dag_run.state),
        # In the DAG's own order, so a reader sees where a run stopped.
        "tasks": {
            task_id: states[task_id]
            for states in [{ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}]
            for task_id in dag.task_ids if task_id in states
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--epochs", default=20, type=int)
    args = parser.parse_args(argv)
    result = run_nightly(args.date, args.model, args.epochs)
    # The last line of output is the machine-readable result (Airflow logs come before it).
    print("DAG_RUN_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
