"""Errors a user can cause; the CLIs print them as one line and exit non-zero."""

from __future__ import annotations

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PARITY_FAILED = 1  # the check ran and the candidate drifted beyond tolerance
EXIT_USAGE = 2  # bad input, missing files, unreachable server: nothing was judged


class UserError(Exception):
    """A problem with the user's input or environment, not a bug in our code."""

    exit_code = EXIT_USAGE


class DataError(UserError):
    """Dataset files are missing, truncated or altered."""


class ManifestError(UserError):
    """A bundle has no manifest, an invalid one, or files that fail their checksums."""
