"""Point labels on a scatter plot that do not collide (used by analysis/report.py).

A search's front often has points a few pixels apart, and trials with the very
same numbers (same seed, same metrics) sit on one pixel: labels drawn at one
fixed offset then print over each other ("#4 truncated" over "#5") and two
trials look like one. This module places labels greedily, in display
coordinates, once the figure's layout is final:

1. points closer than ``MERGE_PX`` on screen are one group, labelled once with
   every number ("#3, #7"): two trials at one coordinate stay two trials;
2. each group's label tries offsets on rings of growing radius around its
   point (right-above first, then the other diagonals and sides), and takes the
   first whose text box (padded) neither overlaps a label already placed nor
   leaves the axes; the first round of tries also keeps clear of the other
   points' markers. A label further than the first ring gets a thin leader
   line to its point, and that line must not cross a placed label either;
3. a label that fits nowhere is left out and returned, so the caller can say
   where the trial is listed instead (the report's tables name every trial).

Greedy is enough here: tens of labels, a few hundred candidate boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Label", "merge_coincident", "place_labels", "text_extent", "MERGE_PX"]

# Points nearer than this on screen (pixels) cannot be told apart: one label names them all.
MERGE_PX = 3.0
# Ring radii (points) and directions (unit offsets) of the candidate label positions.
RADII = (7.0, 15.0, 25.0, 37.0, 51.0, 67.0, 85.0)
DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
PAD_PX = 2.0        # gap kept between two label boxes
MARKER_PX = 6.0     # half-size of a marker, as an obstacle for the first round


@dataclass
class Label:
    x: float                  # data coordinates of the point
    y: float
    text: str
    color: Any = "black"
    members: int = 1          # points it names (merge_coincident)


def merge_coincident(ax, labels: Sequence[Label], sep: str = ", ") -> list[Label]:
    """Labels of points closer than ``MERGE_PX`` on screen joined into one (texts
    joined by ``sep``, in the given order); the group sits at its first point."""
    if not labels:
        return []
    xy = ax.transData.transform(np.array([[lab.x, lab.y] for lab in labels], dtype=float))
    group = list(range(len(labels)))
    for i in range(len(labels)):          # single linkage, small n
        for j in range(i):
            if np.hypot(*(xy[i] - xy[j])) < MERGE_PX:
                gi, gj = group[i], group[j]
                group = [gj if g == gi else g for g in group]
    out: dict[int, Label] = {}
    for i, lab in enumerate(labels):
        g = group[i]
        if g in out:
            out[g] = Label(out[g].x, out[g].y, out[g].text + sep + lab.text, out[g].color,
                           out[g].members + lab.members)
        else:
            out[g] = Label(lab.x, lab.y, lab.text, lab.color, lab.members)
    return list(out.values())


def text_extent(ann, renderer):
    """The display box of an annotation's text alone (no leader line), positions updated."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _overlaps(a, b, pad: float) -> bool:
    return not (a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0 or a.y1 + pad <= b.y0 or b.y1 + pad <= a.y0)


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def _segment_hits_box(p, q, box, pad: float) -> bool:
    """Whether the segment p-q crosses ``box`` grown by ``pad`` (Liang-Barsky clipping)."""
    x0, x1, y0, y1 = box.x0 - pad, box.x1 + pad, box.y0 - pad, box.y1 + pad
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for d, lo, hi, v in ((dx, x0, x1, p[0]), (dy, y0, y1, p[1])):
        if d == 0:
            if v < lo or v > hi:
                return False
            continue
        a, b = (lo - v) / d, (hi - v) / d
        if a > b:
            a, b = b, a
        t0, t1 = max(t0, a), min(t1, b)
        if t0 > t1:
            return False
    return True


def _anchor(box, point):
    """The point of ``box`` nearest ``point``: where a leader line ends."""
    return (min(max(point[0], box.x0), box.x1), min(max(point[1], box.y0), box.y1))


def place_labels(ax, labels: Sequence[Label], renderer, *, fontsize: float = 8.5,
                 obstacles: Sequence[tuple[float, float]] = (), boxed: bool = True,
                 placed: list | None = None) -> tuple[list[Any], list[Label]]:
    """Annotate ``labels`` on ``ax`` without overlaps; return (annotations, left out).

    Call once the layout is final (after ``tight_layout`` and a draw): positions
    are measured in display coordinates. ``obstacles``: data points (x, y) that
    labels should not cover (markers of unlabelled points); ``placed``: text
    boxes already on the axes to avoid (extended with the new ones), so several
    calls on one axes share the space.
    """
    frame = ax.get_window_extent(renderer)
    boxes = placed if placed is not None else []
    leaders: list[tuple[tuple[float, float], tuple[float, float]]] = []
    markers = ax.transData.transform(np.array(obstacles, dtype=float).reshape(-1, 2)) if len(obstacles) else \
        np.zeros((0, 2))
    annotations, left_out = [], []
    # A label naming several trials first: losing it would hide that the point is more than one.
    labels = sorted(labels, key=lambda lab: -lab.members)
    style = dict(fontsize=fontsize, textcoords="offset points", annotation_clip=False, zorder=6)
    if boxed:
        style["bbox"] = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75)
    for lab in labels:
        point = ax.transData.transform((lab.x, lab.y))
        own = np.hypot(*(markers - point).T) < MERGE_PX if len(markers) else np.zeros(0, bool)
        others = markers[~own] if len(markers) else markers
        probe = ax.annotate(lab.text, (lab.x, lab.y), xytext=(0, 0), color=lab.color, **style)
        chosen = None
        for avoid_markers in (True, False):
            for r in RADII:
                for dx, dy in DIRECTIONS:
                    off = (dx * r / np.hypot(dx, dy) if dx and dy else dx * r,
                           dy * r / np.hypot(dx, dy) if dx and dy else dy * r)
                    probe.xyann = off
                    probe.set_ha("left" if dx > 0 else "right" if dx < 0 else "center")
                    probe.set_va("bottom" if dy > 0 else "top" if dy < 0 else "center")
                    box = text_extent(probe, renderer)
                    if not _inside(box, frame) or any(_overlaps(box, b, PAD_PX) for b in boxes):
                        continue
                    if any(_segment_hits_box(p, q, box, PAD_PX) for p, q in leaders):
                        continue
                    if avoid_markers and len(others) and np.any(
                            (others[:, 0] > box.x0 - MARKER_PX) & (others[:, 0] < box.x1 + MARKER_PX)
                            & (others[:, 1] > box.y0 - MARKER_PX) & (others[:, 1] < box.y1 + MARKER_PX)):
                        continue
                    leader = None
                    if r > RADII[0]:
                        end = _anchor(box, point)
                        start = (point[0] + (end[0] - point[0]) * 0.15, point[1] + (end[1] - point[1]) * 0.15)
                        if any(_segment_hits_box(start, end, b, 0.0) for b in boxes):
                            continue
                        leader = (start, end)
                    chosen = (off, probe.get_ha(), probe.get_va(), box, leader)
                    break
                if chosen:
                    break
            if chosen:
                break
        probe.remove()
        if chosen is None:
            left_out.append(lab)
            continue
        off, ha, va, box, leader = chosen
        extra = {}
        if leader is not None:
            extra["arrowprops"] = dict(arrowstyle="-", lw=0.6, color=lab.color, alpha=0.7, shrinkA=0, shrinkB=4)
            leaders.append(leader)
        annotations.append(ax.annotate(lab.text, (lab.x, lab.y), xytext=off, ha=ha, va=va, color=lab.color,
                                       **style, **extra))
        boxes.append(box)
    return annotations, left_out
