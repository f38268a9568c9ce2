"""vet: vet bare-metal servers before they go into production."""

__version__ = "0.1.0"
