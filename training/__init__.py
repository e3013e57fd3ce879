"""Sequential recommenders: warehouse sequences -> temporal split -> PyTorch models -> MLflow registry.

``data`` (split), ``models`` (one file per architecture), ``losses``, ``evaluate``, ``train`` (the
one shared loop + MLflow logging), ``recommender`` (checkpoint -> recommendations) and ``promote``
(champion/challenger). Importing this package loads nothing heavy.
"""
