"""The end-to-end stack of tests/e2e, here with every process exporting its spans to Jaeger."""

from tests.e2e.conftest import pipeline_name, stack, stack_env, stack_settings  # noqa: F401
