"""The model registry stage: registered versions, promotion, rollback, model cards and signed
decision records, between training (which produces candidates) and serving (which loads the
champion through :mod:`registry.versions`)."""
