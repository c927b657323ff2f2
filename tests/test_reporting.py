"""Report builder on hand-made per-case tables: Markdown/HTML rendering, interval tables, figures."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy import ndimage

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.reporting.document import (
    Bullets,
    Document,
    Figure,
    Heading,
    Paragraph,
    Table,
    to_html,
    to_markdown,
    write_report,
)
from nnunet_ext.reporting.figures import LABEL_COLOURS, box_plot, overlay_figure
from nnunet_ext.reporting.tables import (
    Estimate,
    accuracy_table,
    format_bytes,
    metric_values,
    read_per_case,
)


def summary(regions: dict[str, dict[str, tuple[float, float, float, int]]], icc: float | None = 0.9) -> dict:
    """A hand-made ``summary.json`` as ``nnunet-ext evaluate`` writes it: per region, metric -> mean/ci95/n."""
    return {"regions": {region: {"metrics": {m: {"mean": mean, "median": mean, "ci95": [low, high], "n": n}
                                             for m, (mean, low, high, n) in metrics.items()},
                                 "volume_icc_a1": icc}
                        for region, metrics in regions.items()}}


def test_markdown_and_html_say_the_same_thing(tmp_path):
    doc = Document("Title <x>").add(
        Heading("Setup"), Paragraph("a & b"), Bullets(["one", "two"]),
        Table(["h|1", "h2"], [["**0.9**", "<b>"]], "cap"), Figure("figures/f.png", "fig"))
    md = to_markdown(doc)
    assert md.startswith("# Title <x>\n")
    assert "| h\\|1 | h2 |" in md and "|---|---|" in md and "| **0.9** | <b> |" in md
    assert "- one\n- two" in md and "![fig](figures/f.png)" in md
    page = to_html(doc)
    assert "<title>Title &lt;x&gt;</title>" in page and "<p>a &amp; b</p>" in page
    assert "<td><strong>0.9</strong></td><td>&lt;b&gt;</td>" in page
    assert "<img src='figures/f.png'" in page and "<caption>cap</caption>" in page
    md_path, html_path = write_report(doc, tmp_path)
    assert md_path.read_text() == md and html_path.read_text() == page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md"]  # no temp files left


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "x.txt"
    atomic_write_text(target, "old")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    from nnunet_ext.atomic import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_accuracy_table_means_intervals_and_best():
    summaries = {
        "stock": summary({"WT": {"legacy_dice": (0.8, 0.7, 0.9, 3), "legacy_hd95": (2.0, 1.0, 3.0, 3)},
                          "ET": {"legacy_dice": (0.6, 0.5, 0.7, 3), "legacy_hd95": (4.0, 3.0, 5.0, 3)}}),
        "sliceres": summary({"WT": {"legacy_dice": (0.85, 0.75, 0.95, 3), "legacy_hd95": (1.5, 0.5, 2.5, 3)},
                             "ET": {"legacy_dice": (0.5, None, None, 1), "legacy_hd95": (None, None, None, 0),
                                    "lesionwise_dice": (None, None, None, 0)}}, icc=None),
    }
    table = accuracy_table(summaries)
    # lesion-wise columns have no value anywhere: left out
    assert table.headers == ["region", "method", "Dice", "HD95 (mm)", "volume ICC(A,1)", "cases"]
    by_key = {(r[0], r[1]): r[2:] for r in table.rows}
    assert list(by_key) == [("WT", "stock"), ("WT", "sliceres"), ("ET", "stock"), ("ET", "sliceres")]
    assert by_key["WT", "stock"] == ["0.800 [0.700, 0.900]", "2.0 [1.0, 3.0]", "0.900", "3"]
    # higher Dice and lower HD95 are better: the winner differs per region
    assert by_key["WT", "sliceres"][:2] == ["**0.850 [0.750, 0.950]**", "**1.5 [0.5, 2.5]**"]
    assert by_key["ET", "stock"][:2] == ["**0.600 [0.500, 0.700]**", "4.0 [3.0, 5.0]"]  # the only HD95: not bold
    # one case: no interval; no finite value: n/a; ICC null in the JSON: n/a
    assert by_key["ET", "sliceres"] == ["0.500", "n/a", "n/a", "1"]


def test_read_per_case_parses_numbers_and_drops_non_finite(tmp_path):
    path = tmp_path / "per_case.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "region", "legacy_dice", "legacy_hd95"])
        writer.writerows([["a", "WT", "0.5", "inf"], ["b", "WT", "0.7", "4.0"], ["a", "ET", "nan", "1"]])
    table = read_per_case(path)
    assert table[0]["legacy_dice"] == 0.5 and table[0]["case"] == "a"
    assert metric_values(table, "WT", "legacy_hd95").tolist() == [4.0]
    assert metric_values(table, "ET", "legacy_dice").size == 0
    assert Estimate(float("nan"), 0, 0, 0).format(3) == "n/a"
    assert Estimate.from_summary({"mean": 0.5, "ci95": [None, None], "n": 1}).format(2) == "0.50"
    with pytest.raises(FileNotFoundError, match="per_case.csv"):
        read_per_case(tmp_path / "missing" / "per_case.csv")
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv.*case"):
        read_per_case(tmp_path / "bad.csv")


def test_format_bytes():
    assert format_bytes(None) == "n/a" and format_bytes(3 * 2**30 // 2) == "1.50 GiB"


def test_box_plot_writes_png(tmp_path):
    data = {"WT": {"a": [0.8, 0.9, float("nan")], "b": [0.7]}, "ET": {"a": [0.5], "b": []}}
    path = box_plot(data, "Dice", tmp_path / "box.png", title="t")
    image = mpimg.imread(path)
    assert image.ndim == 3
    # one mean marker per method with a finite value: WT a (its NaN dropped) and b in the left panel; in the
    # right panel ET a, and nothing for b (no value: an empty slot, so the boxes line up across panels)
    means = _marker_columns(image, matplotlib.colors.to_hex(matplotlib.rcParams["boxplot.meanprops.markerfacecolor"]))
    assert len(means) == 3, means
    assert means[0] < means[1] < image.shape[1] / 2 < means[2], means
    with pytest.raises(ValueError):
        box_plot({}, "Dice", tmp_path / "empty.png")


def _colour_mask(image: np.ndarray, hex_colour: str, tol: float = 0.08) -> np.ndarray:
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.abs(image[..., :3] - rgb).max(axis=-1) < tol


def _marker_columns(image: np.ndarray, hex_colour: str, gap: int = 8) -> list[float]:
    """x centres (pixels, left to right) of the markers drawn in ``hex_colour``; pieces of one marker (split by
    points drawn over it) closer than ``gap`` pixels count once."""
    mask = _colour_mask(image, hex_colour)
    labels, n = ndimage.label(mask)
    centres = sorted(float(np.nonzero(labels == i)[1].mean()) for i in range(1, n + 1))
    columns: list[list[float]] = []
    for x in centres:
        if columns and x - columns[-1][-1] < gap:
            columns[-1].append(x)
        else:
            columns.append([x])
    return [float(np.mean(c)) for c in columns]


def _colour_present(image: np.ndarray, hex_colour: str, tol: float = 0.08) -> bool:
    return bool(_colour_mask(image, hex_colour, tol).any())


def test_overlay_draws_each_segmentation_contour(tmp_path):
    rng = np.random.default_rng(0)
    shape = (20, 30, 30)
    image = rng.normal(100, 10, shape).astype(np.float32)
    zz, yy, xx = np.indices(shape)
    reference = ((zz - 10) ** 2 + (yy - 15) ** 2 + (xx - 15) ** 2 < 36).astype(np.uint8)
    prediction = np.zeros(shape, np.uint8)
    prediction[reference > 0] = 2  # the method predicts label 2 where the reference says 1
    path = overlay_figure(image, {"reference": reference, "method": prediction}, tmp_path / "o.png",
                          spacing=(2.0, 1.0, 1.0), label_names={1: "NETC", 2: "SNFH"}, title="case")
    picture = mpimg.imread(path)
    panels = picture[: int(0.8 * picture.shape[0])]  # above the legend
    left, right = panels[:, : panels.shape[1] // 2], panels[:, panels.shape[1] // 2:]
    # reference column: label 1 contours only; method column: label 2 contours only
    assert _colour_present(left, LABEL_COLOURS[0]) and not _colour_present(left, LABEL_COLOURS[1])
    assert _colour_present(right, LABEL_COLOURS[1]) and not _colour_present(right, LABEL_COLOURS[0])
    assert not _colour_present(picture, LABEL_COLOURS[3])  # label 4 appears nowhere
    with pytest.raises(ValueError, match="shape"):
        overlay_figure(image, {"reference": reference[:-1]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="reference"):
        overlay_figure(image, {"method": prediction}, tmp_path / "bad.png")


def test_atomic_write_keeps_the_whole_ending_and_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from nnunet_ext.atomic import atomic_write, remove_stale_temporaries

    target = tmp_path / "case.nii.gz"
    seen = []
    atomic_write(target, lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"x")))
    assert seen[0].startswith(".case.") and seen[0].endswith(".tmp.nii.gz") and target.read_bytes() == b"x"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".case.{dead}-0123abcd.tmp.nii.gz"  # a writer killed mid-write
    running = tmp_path / f".case.{os.getpid()}-0123abcd.tmp.nii.gz"
    other = tmp_path / f".other.{dead}-0123abcd.tmp.nii.gz"
    for path in (stale, running, other):
        path.write_bytes(b"half")
    assert remove_stale_temporaries(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, running.name, other.name])
