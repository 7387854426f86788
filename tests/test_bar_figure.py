"""scripts/bar_figure.py: the network beside L-BFGS, one row per photo of quality.py runs."""

from __future__ import annotations

import csv

import pytest
from bar_figure import main
from PIL import Image


def _run_folder(folder, photos, totals):
    folder.mkdir()
    with open(folder / "quality.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["photo", "net_total", "lbfgs_bar_total"])
        writer.writeheader()
        for photo, (net, bar) in zip(photos, totals, strict=True):
            writer.writerow({"photo": photo, "net_total": net, "lbfgs_bar_total": bar})
            stem = photo.rsplit(".", 1)[0]
            Image.new("RGB", (60, 40), "red").save(folder / f"{stem}_network.png")
            Image.new("RGB", (60, 40), "blue").save(folder / f"{stem}_lbfgs50.png")


def test_one_row_per_photo_with_both_images(tmp_path):
    _run_folder(tmp_path / "wave", ["a.jpg", "b.jpg"], [(1.3, 0.6), (1.2, 0.5)])
    _run_folder(tmp_path / "mondrian", ["a.jpg"], [(1.1, 0.5)])
    out = tmp_path / "bar.jpg"
    main([str(tmp_path / "wave"), str(tmp_path / "mondrian"), "--height", "100", "--out", str(out)])
    sheet = Image.open(out).convert("RGB")
    # 3 rows of (label + caption + 100 px image); 2 images of 150 px (60x40 at height 100) + gap.
    assert sheet.size == (304, 3 * (100 + 2 * 18))
    # Left image red (the network), right blue (L-BFGS), in every row.
    for row in range(3):
        y = row * 136 + 36 + 50
        r, g, b = sheet.getpixel((75, y))
        assert r > 200 and b < 60
        r, g, b = sheet.getpixel((154 + 75, y))
        assert b > 200 and r < 60


def test_a_run_without_saved_images_is_one_line(tmp_path, capsys):
    _run_folder(tmp_path / "wave", ["a.jpg"], [(1.3, 0.6)])
    (tmp_path / "wave" / "a_lbfgs50.png").unlink()
    with pytest.raises(SystemExit, match="no saved images of a.jpg"):
        main([str(tmp_path / "wave"), "--out", str(tmp_path / "x.jpg")])
    with pytest.raises(SystemExit, match="quality.csv does not exist"):
        main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.jpg")])
