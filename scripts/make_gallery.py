"""The README's gallery: for each painting, the painting | a held-out photo | that photo stylized.

    python scripts/make_gallery.py --shipped        # the models that ship (the README's gallery)
    python scripts/make_gallery.py                  # demo networks; trains what is missing
    python scripts/make_gallery.py --styles wave mosaic --photo chicago.jpg

With ``--shipped`` every style is the shipped model of that name (checkpoints/<style>.pt; all
of them by default). Otherwise it uses ``checkpoints/demo/<style>.ckpt`` if there is one,
else trains it exactly as ``make demo STYLE=<style>`` does (``scripts/demo.py``). Writes one
JPEG per style to ``docs/gallery/<style>.jpg`` (each kept under 300 KB) and prints the Markdown
for the README.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import torch
from demo import REPO, SHARED, overrides, train_demo
from PIL import Image
from torchvision.transforms.functional import to_pil_image

from fastnst.checkpoint import load_network
from fastnst.images import load_image
from fastnst.shipped import model_path, shipped_models

DEFAULT_STYLES = ["starry_night", "wave", "mosaic", "the_scream"]
MAX_BYTES = 300_000


def to_pil(image: torch.Tensor) -> Image.Image:
    return to_pil_image((image.clamp(0, 1) * 255).round().to(torch.uint8))


def row(images: list[Image.Image], height: int, gap: int = 6) -> Image.Image:
    scaled = [im.resize((round(im.width * height / im.height), height), Image.LANCZOS)
              for im in images]  # fmt: skip
    canvas = Image.new("RGB", (sum(im.width for im in scaled) + gap * (len(scaled) - 1), height),
                       "white")  # fmt: skip
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width + gap
    return canvas


def save_small(image: Image.Image, path: Path) -> int:
    """Save as JPEG at the highest quality (95 down) that stays under MAX_BYTES."""
    for quality in range(95, 40, -5):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True)
        if buffer.tell() <= MAX_BYTES:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=None)
    parser.add_argument("--shipped", action="store_true", help="the shipped models, by name")
    parser.add_argument("--photo", default="chicago.jpg", help="a photo of shared/data/content")
    parser.add_argument("--size", type=int, default=512, help="stylize at this long side")
    parser.add_argument("--height", type=int, default=256, help="height of each picture")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--checkpoint-dir", type=Path, default=REPO / "checkpoints" / "demo")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "gallery")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for training")
    args = parser.parse_args(argv)

    photo_path = args.shared / "data" / "content" / args.photo
    photo = load_image(photo_path, args.size)
    markdown = []
    styles = args.styles or (list(shipped_models()) if args.shipped else DEFAULT_STYLES)
    for style in styles:
        checkpoint = args.checkpoint_dir / f"{style}.ckpt"
        if args.shipped:
            checkpoint = model_path(style)
        elif not checkpoint.is_file():
            start = time.perf_counter()
            run_dir = REPO / "outputs" / "demo" / "runs" / f"gallery_{style}"
            settings = overrides(style, args.shared, args.checkpoint_dir) + args.overrides
            checkpoint = train_demo(settings, run_dir)
            print(f"{style}: trained in {(time.perf_counter() - start) / 60:.1f} min")
        net, _ = load_network(checkpoint)
        with torch.inference_mode():
            stylized = net(photo.unsqueeze(0))[0]
        painting = Image.open(args.shared / "data" / "styles" / f"{style}.jpg").convert("RGB")
        picture = row([painting, to_pil(photo), to_pil(stylized)], args.height)
        path = args.out / f"{style}.jpg"
        size = save_small(picture, path)
        print(f"{path}: {picture.width}x{picture.height}, {size / 1000:.0f} KB")
        markdown.append(f"![{style}: painting, photo, stylized]({path.relative_to(REPO)})")
    print("\n".join(markdown))


if __name__ == "__main__":
    main()
