"""The command-line error printer shared by every entry point.

``cli_main(main)`` runs a CLI's ``main``: an expected failure (a ``UserError``,
a missing file, a broken JSON file, a full disk) becomes ONE line on stderr and
exit code 2;
Ctrl-C exits 130; anything else is a bug, said in one line with the traceback
kept in ``clsearch-crash.log``. Also the plain-text printout of a run's
matrices and metrics, which every CLI shares.
"""
from __future__ import annotations

import argparse
import errno
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import UsageError, UserError
from core.objectives import SUMMARY_METRICS

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, json.JSONDecodeError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a command-line mistake raises ``UsageError`` instead of
    printing the usage block and exiting: every CLI mistake then ends like
    every other expected error, as ONE ``error:`` line and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        if "expected one argument" in message:
            # "--task-sizes -2,12": argparse takes a value that starts with "-"
            # for an option; the "=" form passes it through.
            message += " (a value starting with '-' must be attached: --option=VALUE)"
        raise UsageError(f"{self.prog}: {message}")


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def cli_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; expected failures become one stderr line and exit code 2."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: not an error
        return 0
    except EXPECTED_ERRORS as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _crash(exc)
        # A full disk is the user's to fix, wherever the write was: say which.
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"error: no space left on the disk{where} ({exc.strerror}); free some space and run the command "
              f"again (a search: with --resume)", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line, keep the trace in a file
        return _crash(exc)


def _crash(exc: BaseException) -> int:
    """A bug: one line on stderr, the traceback (of the exception being
    handled, so call it from an except block) in clsearch-crash.log; exit 1."""
    log = Path.cwd() / "clsearch-crash.log"
    try:
        log.write_text(traceback.format_exc())
        where = f" (traceback in {log})"
    except OSError:
        where = ""
    print(f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}",
          file=sys.stderr)
    return 1


def format_matrix(rows: list[list[float | None]]) -> str:
    lines = []
    for i, row in enumerate(rows):
        cells = " ".join("   .  " if v is None else f"{100 * v:6.1f}" for v in row)
        lines.append(f"  after task {i + 1}: {cells}")
    return "\n".join(lines)


def format_metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "  (not defined for this method)"
    return "\n".join(f"  {m.label:30s} {100 * metrics[m.name]:6.2f} %" for m in SUMMARY_METRICS)
