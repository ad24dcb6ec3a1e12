"""The hooks of tests/conftest.py, each run on a small pytest session of its own
(pytester, in this process).

- isolation: a test that leaves a SIGTERM/SIGINT handler, a watched environment
  variable or ``ray.init`` changed fails (in its teardown), the message names
  the test and what changed, and the next test finds the state put back.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

CONFTEST = (Path(__file__).resolve().parent / "conftest.py").read_text()
INI = """
[pytest]
markers =
    realdata: needs the real GTSRB file
    slow: slow
"""


@pytest.fixture
def session(pytester):
    """A pytester session with this suite's conftest.py."""
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    return pytester


def test_a_leaked_signal_handler_fails_the_test_that_left_it(session):
    session.makepyfile(test_leak="""
        import signal

        def leaked_handler(signum, frame):
            pass

        def test_leaves_a_sigterm_handler():
            signal.signal(signal.SIGTERM, leaked_handler)

        def test_restores_its_sigint_handler():
            old = signal.signal(signal.SIGINT, leaked_handler)
            signal.signal(signal.SIGINT, old)

        def test_next_finds_the_old_handler():
            assert signal.getsignal(signal.SIGTERM) is not leaked_handler
    """)
    result = session.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_leaves_a_sigterm_handler*",
        "*test_leak.py::test_leaves_a_sigterm_handler (or a fixture it set up) changed process-wide state*",
        "*SIGTERM handler: before *, after test_leak.leaked_handler",
    ])
    assert "SIGINT" not in result.stdout.str()


def test_a_module_fixture_that_leaves_a_handler_is_caught(session):
    """Ray's in-process cluster shape: a module-scoped fixture installs a handler
    and its teardown does not remove it. A function-scoped check would miss this
    (the module fixture is set up before and torn down after it); the hooks
    report the test that set the fixture up."""
    session.makepyfile(test_node="""
        import signal
        import pytest

        def node_handler(signum, frame):
            pass

        @pytest.fixture(scope="module")
        def node():
            signal.signal(signal.SIGTERM, node_handler)
            yield

        def test_first(node):
            pass

        def test_second(node):
            pass
    """)
    result = session.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_first*",
                                 "*SIGTERM handler: before *, after test_node.node_handler"])


def test_leaked_environment_and_ray_state_fail_and_are_put_back(session, monkeypatch):
    # A stand-in for Ray: the check reads sys.modules["ray"] only, never imports it.
    fake_ray = types.SimpleNamespace(up=False)
    fake_ray.is_initialized = lambda: fake_ray.up
    fake_ray.shutdown = lambda: setattr(fake_ray, "up", False)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    session.makepyfile(test_env="""
        import os
        import sys

        def test_sets_omp_threads():
            os.environ["OMP_NUM_THREADS"] = "7"

        def test_sets_it_with_monkeypatch(monkeypatch):
            monkeypatch.setenv("OMP_NUM_THREADS", "7")

        def test_starts_ray():
            sys.modules["ray"].up = True

        def test_next_finds_both_put_back():
            assert "OMP_NUM_THREADS" not in os.environ and not sys.modules["ray"].is_initialized()
    """)
    result = session.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_sets_omp_threads*",
                                 "*$OMP_NUM_THREADS: before None, after '7'",
                                 "*ERROR at teardown of test_starts_ray*",
                                 "*ray.init: before False, after True"])
