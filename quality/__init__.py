"""Data-quality gate of the nightly pipeline: Great Expectations suites as code (``suites``), their
inputs from the lake and warehouse (``inputs``), their running (``validation``) and the gate's
verdict that stops features, training and promotion (``gate``); rejected days (``admission``)."""
