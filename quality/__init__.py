"""Data-quality gate of the nightly pipeline: Great Expectations suites as code (``suites``) and the
gate that validates the day's lake and warehouse tables before features, training and promotion
(``gate``)."""
