"""analysis.pareto on small hand-made point sets (fronts worked out by hand)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import front_ranks, non_dominated, pareto_table

NAN, INF = float("nan"), float("inf")


def test_two_objectives_max_min():
    # (final_acc max, forgetting min)
    pts = [(0.9, 0.3),   # a: front
           (0.8, 0.1),   # b: front
           (0.7, 0.2),   # c: dominated by b (0.8 >= 0.7, 0.1 <= 0.2)
           (0.9, 0.4),   # d: dominated by a (equal acc, 0.3 < 0.4)
           (0.6, 0.05)]  # e: front (least forgetting)
    assert non_dominated(pts, ["max", "min"]).tolist() == [True, True, False, False, True]
    # removing a, b, e: c and d are each dominated only by a front point -> rank 1
    assert front_ranks(pts, ["max", "min"]).tolist() == [0, 0, 1, 1, 0]


def test_sense_flip_changes_front():
    pts = [(0.9, 0.3), (0.8, 0.1), (0.7, 0.2), (0.9, 0.4), (0.6, 0.05)]
    # both maximised: (0.9, 0.4) dominates every other point
    assert non_dominated(pts, ["max", "max"]).tolist() == [False, False, False, True, False]
    # both minimised: (0.6, 0.05) dominates every other point
    assert non_dominated(pts, ["min", "min"]).tolist() == [False, False, False, False, True]


def test_three_objectives():
    # (acc max, forgetting min, memory min)
    pts = [(0.9, 0.2, 2000),   # p0 front (best acc)
           (0.8, 0.1, 500),    # p1 front (least forgetting)
           (0.85, 0.3, 200),   # p2 front: only thanks to the 3rd objective (p0 beats it on the first two)
           (0.8, 0.2, 500),    # p3 dominated by p1 (equal acc and memory, more forgetting)
           (0.7, 0.3, 2000)]   # p4 dominated by p0 and p2
    senses = ["max", "min", "min"]
    assert non_dominated(pts, senses).tolist() == [True, True, True, False, False]
    # on the first two objectives alone p2 falls: p0 has 0.9 >= 0.85 and 0.2 <= 0.3
    assert non_dominated([p[:2] for p in pts], senses[:2]).tolist() == [True, True, False, False, False]


def test_ties_in_one_objective():
    # equal acc: the one with less forgetting dominates; equal forgetting: higher acc dominates
    pts = [(0.9, 0.2), (0.9, 0.3), (0.8, 0.2)]
    assert non_dominated(pts, ["max", "min"]).tolist() == [True, False, False]


def test_duplicates():
    # identical non-dominated points are all on the front
    pts = [(0.8, 0.1), (0.8, 0.1), (0.7, 0.3)]
    assert non_dominated(pts, ["max", "min"]).tolist() == [True, True, False]
    assert front_ranks(pts, ["max", "min"]).tolist() == [0, 0, 1]
    # identical dominated points are all off it
    pts = [(0.5, 0.5), (0.5, 0.5), (0.9, 0.1)]
    assert non_dominated(pts, ["max", "min"]).tolist() == [False, False, True]
    assert front_ranks(pts, ["max", "min"]).tolist() == [1, 1, 0]


def test_all_points_equal():
    pts = [(0.5, 0.2, 3.0)] * 4
    assert non_dominated(pts, ["max", "min", "min"]).tolist() == [True] * 4
    assert front_ranks(pts, ["max", "min", "min"]).tolist() == [0] * 4


def test_single_point_and_empty():
    assert non_dominated([[0.3, 0.7]], ["max", "min"]).tolist() == [True]
    assert front_ranks(np.array([[0.3, 0.7]]), ["max", "min"]).tolist() == [0]
    assert non_dominated([], ["max", "min"]).shape == (0,)
    assert front_ranks(np.zeros((0, 2)), ["max", "min"]).shape == (0,)


def test_nan_and_inf_rows_excluded():
    pts = [(0.5, 0.5),    # front: the rows below that would beat it do not count
           (1.0, NAN),    # NaN: never on the front, dominates nothing
           (INF, 0.0),    # +inf acc: excluded
           (0.9, -INF),   # -inf forgetting (min): excluded
           (0.4, 0.6)]    # dominated by (0.5, 0.5)
    front = non_dominated(pts, ["max", "min"])
    assert front.dtype == bool
    assert front.tolist() == [True, False, False, False, False]
    assert front_ranks(pts, ["max", "min"]).tolist() == [0, -1, -1, -1, 1]
    # all rows invalid
    assert non_dominated([(NAN, 1.0), (1.0, NAN)], ["max", "max"]).tolist() == [False, False]
    assert front_ranks([(NAN, 1.0)], ["max", "max"]).tolist() == [-1]


def test_front_ranks_layered():
    # both maximised; fronts constructed by hand:
    #   rank 0: (4,1) (3,3) (1,4)
    #   rank 1: (3,1) < (4,1);  (2,2) < (3,3);  (1,3) < (1,4);  mutually incomparable
    #   rank 2: (2,1) < (3,1), (2,2);  (1,2) < (2,2), (1,3)
    #   rank 3: (1,1) < (2,1), (1,2)
    # plus a duplicate (2,2) (rank 1) and a NaN row (-1), in scrambled order
    pts = [(1, 1), (2, 2), (4, 1), (NAN, 5), (1, 2), (3, 1), (1, 4), (2, 2), (2, 1), (3, 3), (1, 3)]
    expect = [3, 1, 0, -1, 2, 1, 0, 1, 2, 0, 1]
    r = front_ranks(pts, ["max", "max"])
    assert r.dtype.kind == "i"
    assert r.tolist() == expect
    assert non_dominated(pts, ["max", "max"]).tolist() == [e == 0 for e in expect]


def test_front_ranks_consistent_on_random_points():
    # Structural check against a plain-python dominance test (not a number re-derivation):
    # rank r > 0 rows are dominated by some rank r-1 row, and no row dominates another of equal rank.
    rng = np.random.default_rng(0)
    pts = np.round(rng.random((60, 3)), 1)        # rounding makes ties and duplicates likely
    senses = ["max", "min", "max"]
    r = front_ranks(pts, senses)
    q = pts * np.array([1, -1, 1])

    def dom(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    for i, j in itertools.permutations(range(len(pts)), 2):
        if r[i] == r[j]:
            assert not dom(q[i], q[j])
    for i in range(len(pts)):
        if r[i] > 0:
            assert any(dom(q[k], q[i]) for k in np.flatnonzero(r == r[i] - 1))
    assert ((r == 0) == non_dominated(pts, senses)).all()


@pytest.mark.parametrize("senses, match", [
    (["max", "avg"], "unknown sense"),
    (["MAX", "min"], "unknown sense"),
    (["max"], "senses"),                 # 2 columns, 1 sense
    (["max", "min", "min"], "senses"),
    ("max", "senses"),                   # a bare string is not a list of senses
    ([], "empty"),
])
def test_invalid_senses(senses, match):
    with pytest.raises(ValueError, match=match) as info:
        non_dominated([(0.1, 0.2), (0.3, 0.4)], senses)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        front_ranks([(0.1, 0.2), (0.3, 0.4)], senses)


def test_invalid_points():
    with pytest.raises(ValueError, match="2-D"):
        non_dominated([0.1, 0.2], ["max", "min"])
    with pytest.raises(ValueError, match="numeric"):
        non_dominated([("a", 0.2)], ["max", "min"])


# ---------------------------------------------------------------- pareto_table

def _trials():
    return pd.DataFrame(
        {"final_acc":  [0.70, 0.80, 0.60, 0.95, 0.75, NAN],
         "forgetting": [0.10, 0.20, 0.25, 0.01, 0.30, 0.05],
         "status": ["completed", "completed", "completed", "diverged", "completed", "completed"]},
        index=["t0", "t1", "t2", "t3", "t4", "t5"])


OBJ = {"final_acc": "max", "forgetting": "min"}


def test_pareto_table_eligibility_mask():
    df = _trials()
    before = df.copy()
    # eligible given in a different order from df: aligned on the index
    eligible = (df["status"] == "completed").iloc[::-1]
    out = pareto_table(df, OBJ, eligible=eligible)
    # t3 (diverged) would dominate everyone but is ineligible; t5 has NaN acc.
    # Among t0, t1, t2, t4: t0 and t1 are the front; t2 < t0, t4 < t1 -> rank 1.
    # Order: rank 0 by acc desc (t1 0.80, t0 0.70), rank 1 (t4 0.75, t2 0.60), then unranked (t3, t5 NaN).
    assert list(out.index) == ["t1", "t0", "t4", "t2", "t3", "t5"]
    assert out["on_front"].tolist() == [True, True, False, False, False, False]
    assert out["front_rank"].tolist() == [0, 0, 1, 1, -1, -1]
    assert out["on_front"].dtype == bool
    assert out["front_rank"].dtype.kind == "i"
    pd.testing.assert_frame_equal(df, before)          # input untouched
    assert list(out.columns[:3]) == ["final_acc", "forgetting", "status"]


def test_pareto_table_without_mask():
    out = pareto_table(_trials(), OBJ)
    # t3 dominates t0, t1, t2, t4 -> alone on the front; t0, t1 are dominated only by t3 -> rank 1;
    # t2 (< t0) and t4 (< t1) -> rank 2; t5 NaN -> -1.
    assert out.loc["t3", "on_front"] and out["on_front"].sum() == 1
    assert list(out.index) == ["t3", "t1", "t0", "t4", "t2", "t5"]
    assert out["front_rank"].tolist() == [0, 1, 1, 2, 2, -1]


def test_pareto_table_mask_as_list_and_missing_labels():
    df = _trials()
    out = pareto_table(df, OBJ, eligible=[True, True, True, False, True, True])
    assert sorted(out.index[out["on_front"]]) == ["t0", "t1"]
    # a Series covering only some rows: missing labels count as ineligible
    out = pareto_table(df, OBJ, eligible=pd.Series({"t0": True, "t2": True, "t3": None}))
    # t0 and t2 compete; t0 dominates t2 (0.70 >= 0.60, 0.10 <= 0.25)
    assert sorted(out.index[out["on_front"]]) == ["t0"]
    assert out.loc["t2", "front_rank"] == 1
    assert (out.loc[["t1", "t3", "t4", "t5"], "front_rank"] == -1).all()


def test_pareto_table_errors():
    df = _trials()
    with pytest.raises(ValueError, match="not in the table"):
        pareto_table(df, {"final_acc": "max", "bwt": "max"})
    with pytest.raises(ValueError, match="unknown sense"):
        pareto_table(df, {"final_acc": "maximize"})
    with pytest.raises(ValueError, match="one entry per row"):
        pareto_table(df, OBJ, eligible=[True, False])
    with pytest.raises(ValueError, match="not in df"):
        pareto_table(df, OBJ, eligible=pd.Series({"t9": True}))
    with pytest.raises(ValueError, match="numeric"):
        pareto_table(df, {"status": "max"})
    with pytest.raises(ValueError, match="non-empty"):
        pareto_table(df, {})


def test_pareto_table_three_objectives_and_empty():
    df = pd.DataFrame({"acc": [0.9, 0.85, 0.7], "forg": [0.2, 0.3, 0.3], "memory": [2000, 200, 2000]})
    out = pareto_table(df, {"acc": "max", "forg": "min", "memory": "min"})
    # row 1 survives only through memory; row 2 is dominated by both others
    assert out.index.tolist() == [0, 1, 2]
    assert out["on_front"].tolist() == [True, True, False]
    empty = pareto_table(df.iloc[:0], {"acc": "max", "forg": "min"})
    assert len(empty) == 0 and {"on_front", "front_rank"} <= set(empty.columns)
