"""Helpers for tests that write a warehouse by hand instead of running dbt."""

from __future__ import annotations

# ``int_events_sessionized`` as dbt derives it from the events, here from ``user_sequences``:
# one row per event, a new gap-based session after 30 minutes of inactivity (the default).
SESSIONIZED_FROM_USER_SEQUENCES = """
    CREATE OR REPLACE TABLE int_events_sessionized AS
    WITH events AS (
        SELECT user_id, unnest(item_ids) AS item_id, unnest(event_times) AS event_time,
               generate_subscripts(item_ids, 1) AS position
        FROM user_sequences
    ),
    starts AS (
        SELECT *, CASE WHEN lag(event_time) OVER w IS NULL
                         OR event_time - lag(event_time) OVER w > INTERVAL 30 MINUTE
                       THEN 1 ELSE 0 END AS is_start
        FROM events WINDOW w AS (PARTITION BY user_id ORDER BY event_time, position)
    )
    SELECT user_id, item_id, event_time, lpad(CAST(position AS VARCHAR), 9, '0') AS event_id,
           user_id || '#' || CAST(sum(is_start) OVER (PARTITION BY user_id ORDER BY event_time, position)
                                  AS VARCHAR) AS session_id
    FROM starts
"""
