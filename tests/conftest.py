"""Shared fixtures for vet's own tests."""

from hypothesis import HealthCheck, settings

# CI machines are small and busy: a slow example is not a failure (no per-example
# deadline); the examples themselves stay as many as hypothesis chooses.
settings.register_profile("vet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vet")

pytest_plugins = [
    "pytester", "tests.fixtures.serial_bridge", "tests.fixtures.sshd", "tests.fixtures.lab",
]
