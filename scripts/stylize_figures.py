"""Figures for fastnst-stylize's large-image, export and video paths, measured end to end.

    python scripts/stylize_figures.py CKPT [--big 4096] [--out outputs/stylize_figures]

Prints (and writes as JSON):
- tiled vs untiled difference on a photo small enough to do both (whole-image statistics);
- peak resident memory and wall time of a BIG x BIG stylize, untiled and under memory
  budgets (``/usr/bin/time -v`` around the real console script), and each tiled result's
  difference from the untiled one;
- ONNX export vs PyTorch: the max abs difference ``fastnst-export`` prints;
- flicker on a clip panning across a real photo: mean change between consecutive frames.

The photos come from ../shared/data/content (evaluation images). Needs the dev extras.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from fastnst.images import load_image

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO.parent / "shared" / "data" / "content"
BIN = Path(sys.executable).parent


def run_measured(args: list[str]) -> dict:
    """Run a console script under /usr/bin/time -v; peak RSS (MB) and wall seconds."""
    result = subprocess.run(
        ["/usr/bin/time", "-v", *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{result.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr)[
        1
    ]
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    return {"peak_rss_mb": rss / 1024, "wall_s": seconds, "stdout": result.stdout.strip()}


def diff(a: Path, b: Path) -> dict:
    d = (load_image(a) - load_image(b)).abs()
    return {"max": float(d.max()), "mean": float(d.mean()), "max_8bit": float(d.max()) * 255}


def pan_clip(photo: Path, path: Path, frames: int = 48, size=(320, 240), fps: int = 24) -> None:
    """A camera pan across a real photo: every frame is a shifted crop."""
    img = np.asarray(Image.open(photo).convert("RGB").resize((640, 480)))
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            x = round(i * (img.shape[1] - w) / (frames - 1))
            crop = np.ascontiguousarray(img[100 : 100 + h, x : x + w])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")))
        out.mux(stream.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--big", type=int, default=4096, help="side of the large test image")
    parser.add_argument(
        "--budgets",
        nargs="+",
        default=["4GB", "2GB"],
        help="--max-memory of the tiled runs (4 GB: exact tiling at 4096 px; 2 GB: thumbnail)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "stylize_figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stylize = [str(BIN / "fastnst-stylize"), str(args.checkpoint), "--device", "cpu"]
    report: dict = {"torch": torch.__version__}
    photo = CONTENT / "tubingen.jpg"

    # 1. Tiled vs untiled, whole-image statistics (the image fits the budget).
    for name, extra in (("whole", []), ("tiled", ["--tile", "256"])):
        subprocess.run(
            [
                *stylize,
                str(photo),
                "-o",
                str(args.out / f"small_{name}.png"),
                "--overwrite",
                *extra,
            ],
            check=True,
            capture_output=True,
        )
    report["tiled_vs_untiled_768x1024_tile256"] = diff(
        args.out / "small_whole.png", args.out / "small_tiled.png"
    )
    print("tiled (256 px) vs untiled, 768x1024:", report["tiled_vs_untiled_768x1024_tile256"])

    # 2. BIG x BIG, untiled vs tiled under a memory budget.
    big = args.out / f"big_{args.big}.png"
    Image.open(photo).convert("RGB").resize((args.big, args.big), Image.BICUBIC).save(big)
    runs = {}
    settings = [("untiled", "1000GB")] + [(f"budget {b}", b) for b in args.budgets]
    for name, budget in settings:
        target = args.out / f"big_{name.replace(' ', '_')}.png"
        runs[name] = run_measured(
            [*stylize, str(big), "-o", str(target), "--overwrite", "--max-memory", budget]
        )
        if name != "untiled":
            runs[name]["vs_untiled"] = diff(args.out / "big_untiled.png", target)
        r = runs[name]
        print(f"{args.big}x{args.big} {name}: peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['wall_s']:.1f} s, vs untiled {r.get('vs_untiled')}")  # fmt: skip
    report[f"big_{args.big}"] = runs

    # 3. ONNX vs PyTorch, as fastnst-export verifies it.
    export = subprocess.run(
        [str(BIN / "fastnst-export"), str(args.checkpoint), "-o", str(args.out / "model.onnx"),
         "--overwrite"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    report["onnx"] = export.stdout.strip()
    print(export.stdout.strip())

    # 4. Flicker on a panning clip.
    clip = args.out / "pan.mp4"
    pan_clip(photo, clip)
    result = subprocess.run(
        [*stylize, str(clip), "-o", str(args.out / "pan_styled.mp4"), "--overwrite",
         "--batch-size", "8"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    report["video"] = result.stdout.strip()
    print(result.stdout.strip())
    (args.out / "figures.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'figures.json'}")


if __name__ == "__main__":
    main()
