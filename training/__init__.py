"""Sequential recommenders: warehouse sequences -> temporal split -> PyTorch models -> MLflow runs.

``data`` (split), ``models`` (one file per architecture), ``losses``, ``evaluate``, ``train`` (the
one shared loop), ``tracking`` (MLflow runs and registered versions) and ``recommender``
(checkpoint -> recommendations). Promotion lives one floor up, in ``registry``. Importing this
package loads nothing heavy.
"""
