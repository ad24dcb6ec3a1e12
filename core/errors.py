"""The base class of every error a user can fix: its message is ONE line.

The command-line entry points (``core.cli.cli_main``) print such an error as
``error: <message>`` and exit with code 2, instead of a traceback. Each layer has
its own subclass (``ConfigError``, ``DatasetError``, ``ResultsError``,
``UsageError``), so callers can still tell them apart.
"""
from __future__ import annotations


class UserError(Exception):
    """An expected failure caused by the input (command line, config, files)."""

    def __init__(self, message: str = "") -> None:
        # Collapse whitespace: wrapped library messages (zipfile, zlib, pickle)
        # sometimes contain newlines, and the CLI promises one-line errors.
        super().__init__(" ".join(str(message).split()))


class UsageError(UserError):
    """A user mistake in the command line or in the files it names."""
