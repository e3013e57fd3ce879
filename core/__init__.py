"""The ground floor: settings, logging, user errors and the names every floor shares.

Imports nothing heavy (no torch, Spark, Airflow, Feast or MLflow), so any layer can use it.
"""
