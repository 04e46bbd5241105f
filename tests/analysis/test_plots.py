"""The paper's plots drawn from a hand-made leaderboard frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from netzip_mlflow.analysis.plots import (
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    bubble_plot,
    ocs_bar_plot,
    MIN_SPAN,
    REACH,
    RING,
    radar_plot,
    radar_radii,
    radar_scales,
    run_labels,
    save,
)
from netzip_mlflow.errors import DataError
from netzip_mlflow.tracking import keys

RATIOS = [keys.RATIO_PERFORMANCE, keys.RATIO_SPEEDUP, keys.RATIO_COMPRESSION, keys.RATIO_EFFICIENCY]


def board() -> pd.DataFrame:
    """Five runs (two with negative OCS, one without a score) in leaderboard columns."""
    rows = [
        ("ptq_int8", "ptq", (1.0, 4.0, 4.0, 2.0), 7.0, 0.80, 5.0, 10.0),
        ("fp16", "fp16", (1.0, 2.0, 2.0, 1.25), 2.25, 0.80, 8.0, 20.0),
        ("prune_l1_50", "prune_unstructured", (0.9, 1.0, 1.0, 1.0), -0.081, 0.72, 10.0, 40.0),
        ("prune_random_90", "prune_unstructured", (0.4, 1.0, 1.0, 1.0), -0.96, 0.32, 10.0, 40.0),
        ("broken", "qat", (np.nan,) * 4, np.nan, np.nan, np.nan, np.nan),
    ]
    return pd.DataFrame([
        {"recipe": r, "technique": t, "hardware": "pc01", **dict(zip(RATIOS, ratios)),
         keys.OCS: score, keys.TOP1: top1, keys.LATENCY_MS: lat, keys.DISK_MB: disk}
        for r, t, ratios, score, top1, lat, disk in rows
    ])


def _run_lines(fig: Figure) -> list:
    ax = fig.axes[0]
    return [line for line in ax.get_lines() if "(OCS " in str(line.get_label())]


def test_radar_puts_each_axis_on_its_own_scale_around_the_baseline_ring() -> None:
    fig = radar_plot(board(), top_k=4)
    ax = fig.axes[0]
    lines = _run_lines(fig)
    assert len(lines) == 4  # the unscored run is not drawn
    labels = [line.get_label() for line in lines]
    assert labels[0].startswith("ptq_int8") and labels[-1].startswith("prune_random_90")
    # axes P, S, C, E, OCS; by hand: largest |value - centre| per axis over the 4 drawn runs
    values = board()[RATIOS + [keys.OCS]].head(4).to_numpy(float)
    spans = radar_scales(values, [1, 1, 1, 1, 0])
    np.testing.assert_allclose(spans, [0.6, 3.0, 3.0, 1.0, 7.0])  # P 1-0.4, S 4-1, ..., OCS 7-0
    assert len(set(spans.round(6))) > 1  # the axes differ in scale
    ring = next(line for line in ax.get_lines() if str(line.get_label()).startswith("baseline"))
    assert ring.get_ydata()[0] == pytest.approx(RING)
    worst = lines[-1].get_ydata()  # prune_random_90: P = 0.4, OCS = -0.96
    assert worst[0] == pytest.approx(RING - REACH)  # the largest accuracy loss reaches the inner edge
    assert worst[4] == pytest.approx(RING + REACH * -0.96 / 7.0)  # negative OCS inside the ring
    ptq = lines[0].get_ydata()
    assert ptq[1] == pytest.approx(RING + REACH)  # speedup 4: the outer edge of its own axis
    prune_l1 = lines[2].get_ydata()
    assert prune_l1[0] == pytest.approx(RING - REACH * 0.1 / 0.6)  # P 0.9: visibly inside the ring
    tick_labels = {t.get_text() for t in ax.texts}
    assert {"0.4", "1", "1.6", "4", "7", "-7"} <= tick_labels  # values at both ends of each axis
    assert "-2" not in tick_labels  # 1 - 3 on the speedup axis: no ratio is negative
    assert len(fig.legends[0].get_texts()) == 1 + 4


def test_radar_axis_without_values_keeps_a_minimum_span() -> None:
    values = np.array([[1.0, np.nan, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(radar_scales(values, [1, 1, 1, 1, 0]), [MIN_SPAN] * 5)
    radii = radar_radii(np.array([[1.0, 1.0]]), [1.0, 1.0], np.array([0.5, 2.0]))
    np.testing.assert_allclose(radii, [[RING, RING]])


def test_radar_top_k_limits_the_runs() -> None:
    assert len(_run_lines(radar_plot(board(), top_k=2))) == 2


def test_ocs_bars_sorted_with_negative_bars_in_another_colour() -> None:
    fig = ocs_bar_plot(board())
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 4
    widths = [bar.get_width() for bar in bars]
    assert widths == sorted(widths, reverse=True) == [7.0, 2.25, -0.081, -0.96]
    colours = [bar.get_facecolor() for bar in bars]
    assert colours[:2] == [to_rgba(POSITIVE_COLOUR)] * 2
    assert colours[2:] == [to_rgba(NEGATIVE_COLOUR)] * 2
    assert ax.get_xlim()[0] < -0.96  # negative bars are inside the view
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "ptq_int8"
    assert len(ocs_bar_plot(board(), top_k=2).axes[0].patches) == 2


def test_bubble_plot_colours_techniques_and_scales_area_with_disk_size() -> None:
    baseline = {keys.TOP1: 0.8, keys.LATENCY_MS: 10.0, keys.DISK_MB: 46.8}
    fig = bubble_plot(board(), baseline=baseline)
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatters) == 3 + 1  # ptq, fp16, prune_unstructured + baseline
    prune = next(c for c in scatters if len(c.get_offsets()) == 2)
    sizes = prune.get_sizes()
    ptq = scatters[[len(c.get_offsets()) for c in scatters].index(1)]
    offsets = np.vstack([c.get_offsets() for c in scatters[:3]])
    assert sorted(map(tuple, offsets)) == sorted(
        [(5.0, 0.80), (8.0, 0.80), (10.0, 0.72), (10.0, 0.32)])
    all_sizes = np.concatenate([c.get_sizes() for c in scatters[:3]])
    disks = np.array([20.0, 40.0, 40.0, 10.0])  # fp16, prune x2, ptq (alphabetical techniques)
    np.testing.assert_allclose(all_sizes / all_sizes[0], disks / disks[0])
    assert sizes[0] == sizes[1] and ptq.get_sizes()[0] < sizes[0]
    base = scatters[-1]
    assert tuple(base.get_offsets()[0]) == (10.0, 0.8)
    assert len(ax.texts) == 4  # one recipe label per plotted run
    legend_labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_labels == ["fp16", "prune_unstructured", "ptq", "baseline"]


def test_run_labels_add_hardware_for_repeated_recipes() -> None:
    df = pd.DataFrame({"recipe": ["ptq", "ptq", "fp16"], "hardware": ["pc", "pi", "pc"]})
    assert run_labels(df) == ["ptq @ pc", "ptq @ pi", "fp16"]


def test_save_writes_a_png(tmp_path) -> None:
    path = save(ocs_bar_plot(board()), tmp_path / "plots" / "ocs.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_plots_explain_missing_data() -> None:
    with pytest.raises(DataError, match="finite OCS"):
        ocs_bar_plot(board().iloc[4:])
    with pytest.raises(DataError, match="leaderboard"):
        radar_plot(board().drop(columns=[keys.RATIO_SPEEDUP]))


def test_bubble_labels_do_not_overlap_in_a_cluster() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = ["ptq_int8_static_per_channel", "qat_int8", "fp16_half", "ptq_dynamic_linear_only",
             "gup_l1_50", "structured_l1_30_macs", "gup_random_90", "structured_random_70"]
    techniques = ["ptq", "qat", "fp16", "ptq_dynamic", "prune_unstructured", "prune_structured",
                  "prune_unstructured", "prune_structured"]
    latency = [2.1, 2.0, 4.8, 4.9, 5.2, 3.3, 5.1, 1.7]  # three clusters of overlapping bubbles
    top1 = [0.985, 0.988, 0.99, 0.99, 0.962, 0.92, 0.41, 0.54]
    disk = [11.2, 11.2, 22.4, 44.1, 44.7, 30.1, 44.7, 13.5]
    df = pd.DataFrame({"recipe": names, "technique": techniques, keys.LATENCY_MS: latency,
                       keys.TOP1: top1, keys.DISK_MB: disk, "hardware": "pc01"})
    fig = bubble_plot(df, baseline={keys.TOP1: 0.99, keys.LATENCY_MS: 5.0, keys.DISK_MB: 44.7})
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(names)
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (ax.texts[i].get_text(), b)
