"""Registers vet's pytest plugin for suites/ (and, inertly, for tests/)."""

pytest_plugins = ["harness.pytest_plugin"]
