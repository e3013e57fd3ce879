"""Feast feature repository of the platform (project ``recsys``) and the code that operates it.

The definition builders (``entities``, ``data_sources``, ``feature_views``,
``feature_services``) make the repo's objects for one feature-data directory; ``definitions``
registers them for a Settings and ``cli_definitions`` is what the ``feast`` CLI registers.
``store`` names the repo and builds its FeatureStore from Settings, ``export`` writes the
warehouse marts to Parquet, ``materialize`` loads them online and ``online_reader`` reads them
for serving and promotion; ``push`` appends live events to the online recent-item lists (push
source ``user_events_push``) and ``sequences`` is the offline point-in-time builder the online
lists are checked against.
"""
