"""FastAPI recommendation service: Feast online features + the MLflow champion."""
