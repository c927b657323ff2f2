"""Helpers shared by the tests: generated datasets (``synthetic``), the CLI environment (``environment``) and the
README's command lines (``readme_blocks``). Fixtures live in ``tests/conftest.py``."""
