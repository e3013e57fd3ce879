"""Glue of the nightly pipeline: settings and the stage functions the DAG calls."""
