"""The registry tests train tiny models on the training tests' ring warehouse."""

from tests.training.conftest import ring_warehouse, settings, synth, tiny_sasrec  # noqa: F401 - fixtures
