"""Orchestration on the top floor: the stage functions the DAGs call, the demo, the DAG runner
and the nightly report."""
