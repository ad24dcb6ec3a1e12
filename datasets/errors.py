"""The one exception type the data layer raises for problems a user can fix.

Everything that goes wrong while finding, reading, validating or splitting a
dataset (a missing file, a truncated archive, an array of the wrong shape, more
tasks than classes, ...) is reported as a ``DatasetError`` whose message is ONE
line naming the problem and, where it helps, what to do about it. The command-line
entry points catch it and print the message instead of a traceback, so keep the
messages short, specific and free of newlines.
"""
from __future__ import annotations


from core.errors import UserError


class DatasetError(UserError):
    """A dataset could not be found, read, validated or split as asked (one
    line: ``UserError`` collapses the newlines of wrapped library messages)."""


class DataNotFoundError(DatasetError):
    """The dataset's files are not in any candidate directory (and no download
    was asked for). A subclass so that tests and callers can tell "absent"
    (skip, or tell the user where to put it) from "present but broken" (fail)."""
