"""Lazy, repaired import of torchvision.

The pinned torchvision 0.28 wheel from the package registry is built for CUDA.
Next to the CPU-only torch 2.13 it cannot load its compiled ops, and
``import torchvision`` then dies in ``torchvision/_meta_registrations.py`` while
registering a fake kernel for ``torchvision::nms``, an operator whose schema the
missing extension would have defined. Defining the two schemas it needs
(``nms`` and ``qnms``) before the import lets every pure-Python part of
torchvision (datasets, transforms, models) work; only the compiled detection ops
stay unavailable, and this project uses none of them.

Rules:
- Nothing in the project imports torchvision directly: call
  ``import_torchvision()`` at the point of use, never at module import, so that
  ``import datasets`` stays fast and works without torchvision at all.
- The repair runs only when a plain import fails and ``torch.ops.torchvision``
  really lacks ``nms``. Where torchvision's own extension loads (a matching
  CPU/CUDA pair), defining the namespace ourselves would clash with it, so a
  working install is left untouched.
"""
from __future__ import annotations

import sys
import threading
from types import ModuleType

import torch

# The Library object must outlive this call: when it is garbage-collected, torch
# removes the schemas it defined, and torchvision's later fake registrations fail.
_TV_LIB: "torch.library.Library | None" = None
_LOCK = threading.Lock()

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def _forget_partial_import() -> None:
    # A failed ``import torchvision`` leaves half-initialised modules behind;
    # Python would hand those back on the retry instead of running them again.
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]


def _define_missing_schemas() -> None:
    global _TV_LIB
    missing = [name for name in _SCHEMAS if not _has_op(name)]
    if not missing:
        return
    if _TV_LIB is None:
        _TV_LIB = torch.library.Library("torchvision", "DEF")
    for name in missing:
        _TV_LIB.define(_SCHEMAS[name])


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, repairing the CPU-torch/CUDA-torchvision
    mismatch if needed. Idempotent and thread-safe; raises ImportError when
    torchvision is not installed or still cannot be imported."""
    mod = sys.modules.get("torchvision")
    if mod is not None and hasattr(mod, "datasets"):
        return mod
    with _LOCK:
        try:
            import torchvision  # noqa: PLC0415 - lazy on purpose
            return torchvision
        except ModuleNotFoundError:
            raise
        except Exception as first_error:  # RuntimeError from the fake-op registration
            if _has_op("nms") and _has_op("qnms"):
                # The ops exist, so the failure has another cause: do not mask it.
                raise ImportError(f"torchvision failed to import: {first_error}") from first_error
            _forget_partial_import()
            _define_missing_schemas()
            try:
                import torchvision  # noqa: PLC0415
            except Exception as second_error:
                _forget_partial_import()
                raise ImportError(
                    f"torchvision failed to import even with the nms/qnms schemas defined: {second_error}"
                ) from second_error
            return torchvision
