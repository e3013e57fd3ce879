"""Feast feature repository of the platform (project ``recsys``) and the code that operates it.

The definition modules (``entities``, ``data_sources``, ``feature_views``, ``feature_services``)
are what ``feast apply`` registers; ``store`` exports the warehouse tables, applies the
definitions, materializes and reads features for the pipeline and the serving layer.
"""
