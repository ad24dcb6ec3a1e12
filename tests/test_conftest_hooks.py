"""The hooks of tests/conftest.py, each run on a small pytest session of its own
(pytester, in this process, so they stay in the fast tier; the one about
subprocesses starts two tiny ones and is slow).

- tiers: a test that uses ``gtsrb_arrays`` (directly or through a fixture) or
  carries ``realdata`` is ``slow`` without saying so, and ``-m "not slow"``
  leaves it out;
- ``SLOW_CASES``: a case named there is ``slow``; a name that matches no
  collected case of a collected test is reported;
- subprocesses: a test that starts a Python subprocess without ``slow`` fails;
- isolation: a test that leaves a SIGTERM/SIGINT handler, a watched environment
  variable or ``ray.init`` changed fails (in its teardown), the message names
  the test and what changed, and the next test finds the state put back.
"""
from __future__ import annotations

import re
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


def _collected(result) -> set[str]:
    """The test names of a ``--collect-only -q`` listing (one ``file.py::name`` a line)."""
    return {line.split("::")[-1] for line in result.stdout.lines if re.fullmatch(r"\S+\.py::\S+", line)}


def test_real_data_tests_are_slow_without_saying_so(session):
    session.makepyfile(test_mixed="""
        import pytest

        @pytest.fixture
        def first_images(gtsrb_arrays):
            return gtsrb_arrays

        def test_uses_the_fixture(gtsrb_arrays):
            pass

        def test_uses_it_through_another_fixture(first_images):
            pass

        @pytest.mark.realdata
        def test_marked_realdata():
            pass

        @pytest.mark.slow
        def test_marked_slow():
            pass

        def test_plain():
            pass
    """)
    fast = session.runpytest("-m", "not slow", "--collect-only", "-q")
    slow = session.runpytest("-m", "slow", "--collect-only", "-q")
    assert _collected(fast) == {"test_plain"}, fast.stdout.str()
    assert _collected(slow) == {"test_uses_the_fixture", "test_uses_it_through_another_fixture",
                                "test_marked_realdata", "test_marked_slow"}, slow.stdout.str()


def test_a_case_named_in_slow_cases_is_slow_and_a_stale_name_is_reported(pytester):
    pytester.makeconftest(CONFTEST + "\nSLOW_CASES.update({'test_cases.py::test_case[b]': 'costly',\n"
                                     "                   'test_cases.py::test_case[renamed]': 'costly'})\n")
    pytester.makeini(INI)
    pytester.makepyfile(test_cases="""
        import pytest

        @pytest.mark.parametrize("x", ["a", "b"])
        def test_case(x):
            pass
    """)
    fast = pytester.runpytest("-m", "not slow", "--collect-only", "-q")
    assert _collected(fast) == {"test_case[a]"}, fast.stdout.str()
    assert "SLOW_CASES names test_cases.py::test_case[renamed], which is not collected" in fast.stdout.str()


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


@pytest.mark.slow  # it starts two (tiny) Python subprocesses: what it checks is that they are noticed
def test_an_unmarked_test_that_starts_a_python_subprocess_fails(session):
    session.makepyfile(test_sub="""
        import subprocess
        import sys
        import pytest

        def test_unmarked():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        @pytest.mark.slow
        def test_marked():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        def test_other_program():
            subprocess.run(["true"], check=True)
    """)
    result = session.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_unmarked*",
                                 "*test_sub.py::test_unmarked (or a fixture it set up) started 1 Python "
                                 "subprocess(es) (the first: * -c pass ...) but is not marked slow*"])
