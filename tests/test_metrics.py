"""core.metrics on hand-made accuracy matrices.

Every expected number is worked out by hand in the comment beside it; the tests
never re-run the formula under test to get their expectations.
"""

import math

import numpy as np
import pytest

from core import metrics as m

approx = pytest.approx

# A: 3 tasks with unequal eval sizes, so macro != pooled.
A = [[0.9, None, None],
     [0.6, 0.8, None],
     [0.5, 0.7, 0.6]]
A_SIZES = [100, 300, 600]

# B: 4 tasks. Task 0 RISES at step 1 (0.5 -> 0.8) and falls afterwards, so its
# Chaudhry reference (max over rows 0..2 = 0.8) is not the diagonal (0.5).
# Task 1 ends HIGHER than ever before (0.95 > 0.9, 0.7), so PyCIL's max, which
# includes the last row, differs from Chaudhry's. All three conventions differ.
B = [[0.5, None, None, None],
     [0.8, 0.9, None, None],
     [0.6, 0.7, 0.9, None],
     [0.4, 0.95, 0.7, 0.8]]

# C: 3 tasks; task 0 ends above every earlier value (0.7 > 0.6, 0.5): Chaudhry
# forgetting of task 0 is negative, PyCIL's is 0.
C = [[0.6, None, None],
     [0.5, 0.9, None],
     [0.7, 0.8, 0.9]]


# ---------------------------------------------------------------- matrix A

def test_final_accuracy_macro():
    # (0.5 + 0.7 + 0.6) / 3 = 1.8 / 3 = 0.6
    assert m.final_accuracy(A) == approx(0.6)


def test_pooled_accuracy_differs_from_macro():
    # last step: (0.5*100 + 0.7*300 + 0.6*600) / 1000 = (50 + 210 + 360) / 1000 = 0.62
    assert m.pooled_accuracy(A, A_SIZES) == approx(0.62)
    assert m.pooled_accuracy(A, A_SIZES) != approx(m.final_accuracy(A))
    # step 0: only task 0 seen -> 0.9
    assert m.pooled_accuracy(A, A_SIZES, step=0) == approx(0.9)
    # step 1: (0.6*100 + 0.8*300) / 400 = (60 + 240) / 400 = 0.75   (macro would be 0.7)
    assert m.pooled_accuracy(A, A_SIZES, step=1) == approx(0.75)
    # negative steps count from the end
    assert m.pooled_accuracy(A, A_SIZES, step=-1) == approx(0.62)


def test_pooled_equals_macro_for_equal_sizes():
    # equal sizes: (0.5 + 0.7 + 0.6) / 3 = 0.6
    assert m.pooled_accuracy(A, [10, 10, 10]) == approx(0.6)


def test_average_incremental_accuracy_includes_first_step():
    # mean of pooled accuracies at steps 0, 1, 2: (0.9 + 0.75 + 0.62) / 3 = 2.27 / 3
    assert m.average_incremental_accuracy(A, A_SIZES) == approx(2.27 / 3)
    # without the first step it would be (0.75 + 0.62) / 2 = 0.685: make sure it is not
    assert m.average_incremental_accuracy(A, A_SIZES) != approx(0.685)


def test_forgetting_A_all_conventions_agree():
    # task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: 0.8 - 0.7 = 0.1; mean = 0.25.
    # Here every maximum sits on the diagonal, so all conventions give 0.25.
    for conv in ("chaudhry", "first_last", "pycil"):
        assert m.average_forgetting(A, convention=conv) == approx(0.25)
    assert m.average_forgetting(A) == approx(0.25)          # default is chaudhry


def test_bwt_A_negative():
    # ((0.5 - 0.9) + (0.7 - 0.8)) / 2 = (-0.4 - 0.1) / 2 = -0.25
    assert m.backward_transfer(A) == approx(-0.25)


def test_plasticity_A():
    # (0.9 + 0.8 + 0.6) / 3 = 2.3 / 3
    assert m.plasticity(A) == approx(2.3 / 3)


def test_summarize_A_keys_and_values():
    s = m.summarize(A, A_SIZES)
    assert list(s) == ["final_acc", "final_acc_pooled", "avg_inc_acc", "forgetting", "bwt", "plasticity"]
    assert all(type(v) is float for v in s.values())
    assert s == approx({
        "final_acc": 0.6,            # see test_final_accuracy_macro
        "final_acc_pooled": 0.62,    # see test_pooled_accuracy_differs_from_macro
        "avg_inc_acc": 2.27 / 3,     # (0.9 + 0.75 + 0.62) / 3
        "forgetting": 0.25,          # (0.4 + 0.1) / 2
        "bwt": -0.25,                # (-0.4 - 0.1) / 2
        "plasticity": 2.3 / 3,       # (0.9 + 0.8 + 0.6) / 3
    })


def test_accuracy_curves_A():
    c = m.accuracy_curves(A, A_SIZES)
    assert c["current_task"] == approx([0.9, 0.8, 0.6])     # the diagonal
    assert c["all_seen"] == approx([0.9, 0.75, 0.62])       # pooled per step, as above
    assert all(type(v) is float for v in c["current_task"] + c["all_seen"])


# ---------------------------------------------------------------- forgetting conventions

def test_forgetting_B_chaudhry_max_not_on_diagonal():
    # j=0: max(R00, R10, R20) = max(0.5, 0.8, 0.6) = 0.8;  0.8 - 0.4  = 0.4
    # j=1: max(R11, R21)      = max(0.9, 0.7)      = 0.9;  0.9 - 0.95 = -0.05
    # j=2: max(R22)           = 0.9;                       0.9 - 0.7  = 0.2
    # mean = (0.4 - 0.05 + 0.2) / 3 = 0.55 / 3
    assert m.average_forgetting(B, "chaudhry") == approx(0.55 / 3)


def test_forgetting_B_first_last():
    # j=0: 0.5 - 0.4 = 0.1;  j=1: 0.9 - 0.95 = -0.05;  j=2: 0.9 - 0.7 = 0.2
    # mean = 0.25 / 3
    assert m.average_forgetting(B, "first_last") == approx(0.25 / 3)


def test_forgetting_B_pycil_includes_last_row():
    # j=0: max(0.5, 0.8, 0.6, 0.4) = 0.8;  0.8 - 0.4 = 0.4
    # j=1: max(0.9, 0.7, 0.95) = 0.95;     0.95 - 0.95 = 0.0
    # j=2: max(0.9, 0.7) = 0.9;            0.9 - 0.7 = 0.2
    # mean = 0.6 / 3 = 0.2
    assert m.average_forgetting(B, "pycil") == approx(0.2)


def test_bwt_B_is_minus_first_last():
    # ((0.4 - 0.5) + (0.95 - 0.9) + (0.7 - 0.9)) / 3 = (-0.1 + 0.05 - 0.2) / 3 = -0.25 / 3
    assert m.backward_transfer(B) == approx(-0.25 / 3)


def test_forgetting_C_pycil_differs_and_chaudhry_negative():
    # chaudhry: j=0: max(0.6, 0.5) - 0.7 = -0.1;  j=1: 0.9 - 0.8 = 0.1;  mean 0.0
    assert m.average_forgetting(C, "chaudhry") == approx(0.0)
    # pycil:    j=0: max(0.6, 0.5, 0.7) - 0.7 = 0.0;  j=1: max(0.9, 0.8) - 0.8 = 0.1;  mean 0.05
    assert m.average_forgetting(C, "pycil") == approx(0.05)
    # first_last: j=0: 0.6 - 0.7 = -0.1;  j=1: 0.9 - 0.8 = 0.1;  mean 0.0
    assert m.average_forgetting(C, "first_last") == approx(0.0)


def test_unknown_forgetting_convention():
    with pytest.raises(ValueError, match="convention"):
        m.average_forgetting(A, convention="avalanche")


# ---------------------------------------------------------------- bwt sign, T == 1

def test_bwt_positive_when_old_task_improves():
    # R = [[0.5], [0.7, 0.9]]: bwt = 0.7 - 0.5 = +0.2
    R = [[0.5, None], [0.7, 0.9]]
    assert m.backward_transfer(R) == approx(0.2)
    # chaudhry forgetting = max(0.5) - 0.7 = -0.2; pycil = max(0.5, 0.7) - 0.7 = 0
    assert m.average_forgetting(R) == approx(-0.2)
    assert m.average_forgetting(R, "pycil") == approx(0.0)


def test_single_task():
    R = [[0.7]]
    for conv in ("chaudhry", "first_last", "pycil"):
        assert m.average_forgetting(R, conv) == 0.0        # nothing to forget yet
    assert m.backward_transfer(R) == 0.0
    s = m.summarize(R, [50])
    # every accuracy metric is the single entry 0.7
    assert s == approx({"final_acc": 0.7, "final_acc_pooled": 0.7, "avg_inc_acc": 0.7,
                        "forgetting": 0.0, "bwt": 0.0, "plasticity": 0.7})
    assert m.accuracy_curves(R, [50]) == {"current_task": [0.7], "all_seen": [0.7]}


def test_result_format_example():
    # The matrix of docs/RESULT_FORMAT.md, sizes [812, 790, 640]
    R = [[0.98, None, None], [0.60, 0.97, None], [0.41, 0.55, 0.96]]
    n = [812, 790, 640]
    s = m.summarize(R, n)
    assert s["final_acc"] == approx(0.64)                              # (0.41+0.55+0.96)/3 = 1.92/3
    assert s["final_acc_pooled"] == approx(1381.82 / 2242)             # 332.92 + 434.5 + 614.4 over 2242
    assert s["avg_inc_acc"] == approx((0.98 + 1253.5 / 1602 + 1381.82 / 2242) / 3)  # step 1: 487.2+766.3 over 1602
    assert s["forgetting"] == approx(0.495)                            # (0.57 + 0.42) / 2
    assert s["bwt"] == approx(-0.495)
    assert s["plasticity"] == approx(0.97)                             # (0.98+0.97+0.96)/3 = 2.91/3


# ---------------------------------------------------------------- input forms

def test_numpy_nan_upper_triangle_accepted():
    R = np.array([[0.9, np.nan, np.nan], [0.6, 0.8, np.nan], [0.5, 0.7, 0.6]])
    assert m.summarize(R, A_SIZES) == approx(m.summarize(A, A_SIZES))
    assert m.summarize(R, np.array(A_SIZES)) == approx(m.summarize(A, A_SIZES))


def test_as_matrix_none_to_nan_and_upper_ignored():
    M = m.as_matrix(A)
    assert M.dtype == float and M.shape == (3, 3)
    assert np.isnan(M[0, 1]) and np.isnan(M[0, 2]) and np.isnan(M[1, 2])
    assert M[2, 0] == 0.5
    # whatever sits above the diagonal (even out of range) is ignored, and the input is not modified
    R = np.array([[0.9, 7.0, 0.1], [0.6, 0.8, -1.0], [0.5, 0.7, 0.6]])
    M = m.as_matrix(R)
    assert np.isnan(M[0, 1]) and R[0, 1] == 7.0
    assert m.summarize(R, A_SIZES) == approx(m.summarize(A, A_SIZES))


def test_truncated_trial_uses_first_sizes():
    # a trial stopped after 2 of 3 tasks: 2x2 matrix, stream lists 3 sizes
    R = [[0.9, None], [0.6, 0.8]]
    # (0.6*100 + 0.8*300) / 400 = 0.75
    assert m.pooled_accuracy(R, A_SIZES) == approx(0.75)


@pytest.mark.parametrize("bad, match", [
    ([[0.5, None]], "square"),                            # 1 x 2
    ([[0.5], [0.4, 0.6]], "different lengths"),           # ragged triangle
    ([[0.5, None], [None, 0.6]], r"R\[1\]\[0\]"),         # missing below diagonal
    ([[0.5, None], [0.4, float("nan")]], r"R\[1\]\[1\]"),  # NaN on diagonal
    ([[0.5, None], [0.4, float("inf")]], r"R\[1\]\[1\]"),
    ([[90.0, None], [40.0, 95.0]], "outside"),             # percentages
    ([[0.5, None], [-0.1, 0.6]], "outside"),
    ([], "empty"),
    (np.zeros((0, 0)), "empty"),
    ([0.5, 0.6], "2-D"),
    (np.zeros((2, 2, 2)), "2-D"),
    ([["a", None], [0.1, 0.2]], "non-numeric"),
    (0.5, "2-D"),
])
def test_invalid_matrices_rejected(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        m.as_matrix(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        m.final_accuracy(bad)


@pytest.mark.parametrize("sizes", [[100, 300], [100, 0, 600], [100, -3, 600], [100, float("nan"), 600],
                                   [[100, 300, 600]], ["a", "b", "c"]])
def test_invalid_eval_sizes_rejected(sizes):
    with pytest.raises(ValueError, match="eval_sizes"):
        m.summarize(A, sizes)


@pytest.mark.parametrize("step", [3, -4, 1.0, True])
def test_invalid_step_rejected(step):
    with pytest.raises(ValueError, match="step"):
        m.pooled_accuracy(A, A_SIZES, step=step)


def test_summary_values_finite():
    for R in (A, B, C):
        n = [1] * len(R)
        assert all(math.isfinite(v) for v in m.summarize(R, n).values())
