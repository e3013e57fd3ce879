"""Feast feature repository of the platform (project ``recsys``) and the code that operates it.

The definition modules (``entities``, ``data_sources``, ``feature_views``, ``feature_services``)
are what ``feast apply`` registers; ``store`` exports the warehouse tables, applies the
definitions, materializes and reads features for the pipeline and the serving layer; ``push``
appends live events to the online recent-item lists (push source ``user_events_push``) and
``sequences`` is the offline point-in-time builder the online lists are checked against.
"""
