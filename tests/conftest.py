"""Shared pytest fixtures and hooks.

``tiny_stream``: the small synthetic stream of the strategy tests.

``default_config_stream``: a synthetic stream big enough for every registered
strategy's DEFAULT config, so a test can run each strategy as a user gets it.

``gtsrb_arrays``: the real GTSRB arrays (``gtsrb32.npz``), loaded once per test
session through ``datasets.load_gtsrb()``, which looks in ``$CL_DATA_DIR`` and
``./data``. Tests that use it are marked ``realdata``. When the file is absent
they are skipped, except when ``CL_REQUIRE_REAL_DATA=1`` (CI): a skipped real-data
test must not be mistaken for a passing one there, so it fails instead. A file
that is present but broken always fails (that is a real problem, not absence).

Tiers (README, "Tests"): ``pytest -m "not slow"`` is the fast tier run on every
change; plain ``pytest`` (CI) runs everything. Tests that start a subprocess or
Ray, or read the real GTSRB file, carry the ``slow`` marker. The modules mark
them explicitly; ``pytest_collection_modifyitems`` below also marks every test
that uses ``gtsrb_arrays`` (directly or through another fixture) or carries
``realdata``, so a new real-data test cannot land in the fast tier by accident,
and a test that starts a Python subprocess (a CLI, a search, Ray) without the
marker fails, saying so.

Process-wide state: ``pytest_runtest_setup``/``pytest_runtest_teardown`` below
fail the test after which the SIGTERM/SIGINT handlers, a few environment
variables or Ray's ``ray.init`` state differ from what they were before its
setup, then put them back so the leak stops at that test.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings

import pytest

# pytester runs a small pytest session in-process: tests/test_conftest_hooks.py uses
# it to check the hooks below (that they can fail, and what they say).
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def gtsrb_arrays():
    from datasets import DataNotFoundError, load_gtsrb

    try:
        return load_gtsrb()
    except DataNotFoundError as exc:
        if os.environ.get("CL_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"CL_REQUIRE_REAL_DATA=1 but {exc}")
        pytest.skip(f"real GTSRB data not available ({exc})")


@pytest.fixture(scope="session")
def tiny_stream():
    """6 synthetic 8x8 classes in 3 tasks of 2, 20 % validation: the strategy tests' stream."""
    from datasets import build_stream, make_synthetic

    arrays = make_synthetic(num_classes=6, train_per_class=40, test_per_class=10, image_size=8, seed=0)
    return build_stream(arrays, num_tasks=3, val_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def default_config_stream():
    """6 synthetic 8x8 classes in 3 tasks of 2, 20 % validation, with 270 training
    images: more than the largest default memory (200 images for replay, iCaRL,
    GEM and GDumb; DER keeps 10 per class), which every strategy refuses to be
    larger than the stream. A strategy whose default needs more fails its
    ``validate_against`` with a one-line message naming the memory."""
    from datasets import build_stream, make_synthetic

    arrays = make_synthetic(num_classes=6, train_per_class=60, test_per_class=10, image_size=8, seed=0)
    return build_stream(arrays, num_tasks=3, val_fraction=0.2, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run tiny models: one thread is faster than two (thread start-up and
    contention dominate), and keeps results independent of the machine's load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- tiers ---------------------------------------------------------------------------

# Using one of these fixtures (even through another fixture) or carrying one of
# these markers makes a test slow: loading the real file alone takes seconds,
# and what is done with it (training on real images) more.
SLOW_FIXTURES = frozenset({"gtsrb_arrays"})
SLOW_MARKERS = ("realdata",)
# Single cases of a parametrized test whose other cases are cheap: the case list
# is built in the module (e.g. from the strategy registry), so the marker cannot
# sit on the case there. Node id (relative to the repository) -> why.
SLOW_CASES = {
    "tests/test_strategies.py::test_every_registered_strategy_runs_with_its_default_config[gdumb]":
        "GDumb's default trains a fresh model on its 200-image memory, 10 passes per epoch, every task: "
        "about as long as the other nine defaults together",
}


# tryfirst: the markers must be on the items before ``-m`` deselects by them
# (the mark plugin does that in its own pytest_collection_modifyitems).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") is not None:
            continue
        # item.fixturenames is the closure: fixtures requested by fixtures count too.
        if (item.nodeid in SLOW_CASES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or any(item.get_closest_marker(name) is not None for name in SLOW_MARKERS)):
            item.add_marker(pytest.mark.slow)
    # A renamed test or case would silently drop out of SLOW_CASES: say so when its
    # test function was collected but the case was not.
    ids = {item.nodeid for item in items}
    functions = {nodeid.split("[")[0] for nodeid in ids}
    for nodeid in SLOW_CASES:
        if nodeid.split("[")[0] in functions and nodeid not in ids:
            warnings.warn(pytest.PytestConfigWarning(
                f"tests/conftest.py SLOW_CASES names {nodeid}, which is not collected"))


# Python subprocesses started in this process (argv), recorded by a wrapper of
# subprocess.Popen.__init__ (subprocess.run and Ray's own process starts go
# through it). Other programs (git, ldconfig run by ctypes...) are not counted:
# they are quick, and libraries start some on their own.
_PYTHON_CHILDREN: list[list[str]] = []
_POPEN_INIT = pytest.StashKey[object]()


def _argv(args) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        return [os.fsdecode(args)]
    try:
        return [os.fsdecode(a) for a in args]
    except TypeError:
        return []


def _is_python(program: str) -> bool:
    return os.path.realpath(program) == os.path.realpath(sys.executable)


def pytest_configure(config):
    real_init = subprocess.Popen.__init__
    config.stash[_POPEN_INIT] = real_init

    def recording_init(self, args, *a, **k):
        argv = _argv(args)
        program = k.get("executable") or (argv[0] if argv else "")
        if program and _is_python(os.fsdecode(program)):
            _PYTHON_CHILDREN.append(argv)
        real_init(self, args, *a, **k)

    subprocess.Popen.__init__ = recording_init


def pytest_unconfigure(config):
    subprocess.Popen.__init__ = config.stash[_POPEN_INIT]


# -- process-wide state must not leak from one test into the next ---------------------
#
# A test (or a fixture it set up) that changes one of these and does not put it
# back changes every later test in the session: Ray installs its own SIGTERM
# handler (exit after killing "its" processes) when a node starts in-process,
# and such a handler outliving its test once turned a later test's SIGTERM into
# a failure under load. Checked around each test's whole setup-call-teardown
# rather than in a function-scoped fixture: a module-scoped fixture is set up
# before and torn down after every function fixture, so a function fixture would
# see its change as "already there" and its teardown as "not yet done". A
# module-scoped fixture that changes them is therefore reported against the
# first test that set it up: do such work in a subprocess.

WATCHED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Thread counts change the speed and the float results of torch/numpy; the
# others decide which data, which Ray cluster and which Ray temp folder a later
# test (or its subprocesses, which inherit them) uses.
WATCHED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
               "RAY_ADDRESS", "RAY_TMPDIR", "RAY_AUTH_MODE", "CL_DATA_DIR", "CL_REQUIRE_REAL_DATA")
_STATE = pytest.StashKey[dict]()


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")  # never imported by the check itself: importing Ray takes seconds
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def _process_state() -> dict:
    state = {f"{signal.Signals(s).name} handler": signal.getsignal(s) for s in WATCHED_SIGNALS}
    state.update({f"${name}": os.environ.get(name) for name in WATCHED_ENV})
    state["ray.init"] = _ray_initialized()
    return state


def _describe(value) -> str:
    """A handler or value as a reader can find it: SIG_DFL, or module.qualname of a function."""
    if isinstance(value, signal.Handlers):
        return value.name
    if callable(value):
        module = getattr(value, "__module__", None) or "?"
        return f"{module}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


def _restore(before: dict) -> None:
    for sig in WATCHED_SIGNALS:
        handler = before[f"{signal.Signals(sig).name} handler"]
        if handler is not None:  # None: set outside Python, cannot be set back from here
            signal.signal(sig, handler)
    for name in WATCHED_ENV:
        value = before[f"${name}"]
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if not before["ray.init"] and _ray_initialized():
        sys.modules["ray"].shutdown()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    # A wrapper runs before every plain setup hook, the skip/xfail ones included,
    # so the state is recorded for every test that gets a teardown.
    item.stash[_STATE] = _process_state()
    _PYTHON_CHILDREN.clear()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    before = item.stash.get(_STATE, None)
    try:
        result = yield  # function fixtures, and module/session ones that end with this test
    except BaseException:
        if before is not None:
            _restore(before)  # the teardown's own error is the one to report
        raise
    if before is None:
        return result
    problems = []
    after = _process_state()
    changed = [f"{key}: before {_describe(before[key])}, after {_describe(after[key])}"
               for key in before if before[key] != after[key]]
    if changed:
        _restore(before)
        problems.append("changed process-wide state and did not put it back; restored for the next tests. "
                        "Restore it, or do this in a subprocess:\n  " + "\n  ".join(changed))
    children, _PYTHON_CHILDREN[:] = list(_PYTHON_CHILDREN), []
    if children and item.get_closest_marker("slow") is None:
        problems.append(f"started {len(children)} Python subprocess(es) (the first: "
                        f"{' '.join(children[0][:4])} ...) but is not marked slow: a subprocess costs "
                        f"seconds (interpreter, imports) and the fast tier leaves them out. "
                        f"Add @pytest.mark.slow.")
    if problems:
        pytest.fail(f"{item.nodeid} (or a fixture it set up) " + "\nIt also ".join(problems), pytrace=False)
    return result
