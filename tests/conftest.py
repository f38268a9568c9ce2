"""Shared fixtures for vet's own tests."""

pytest_plugins = ["pytester"]
