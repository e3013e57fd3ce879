"""Sequential recommenders: warehouse sequences -> temporal split -> PyTorch models -> MLflow runs.

``data`` (split), ``models`` (one file per architecture), ``objectives`` (what the loop optimises:
windows, batches, loss) over ``losses``, ``evaluate`` (metrics, validation and test passes),
``train`` (the one shared loop) with ``devices``, ``checkpoints`` and ``progress``, ``cli`` (its
command line), ``tracking`` (MLflow runs and registered versions) and ``recommender`` (checkpoint
-> recommendations). Promotion lives one floor up, in ``registry``. Importing this package loads
nothing heavy.
"""
