"""Scheduled renewal and notification worker for software resellers."""

__version__ = "0.1.0"
