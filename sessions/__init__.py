"""Session tables: runs the dbt project (``dbt/``) over the lake's events for an arrival day."""
