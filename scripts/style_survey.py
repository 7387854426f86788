"""Which paintings transfer, and which do not: per-image optimisation of every painting in a
folder onto the same photos, with the same settings, assembled into one contact sheet.

    python scripts/style_survey.py --out outputs/survey/default
    python scripts/style_survey.py --out outputs/survey/scales --styles mondrian udnie \\
        --set style.scales=[1.0,0.5]

Every run is :func:`fastnst.optimize.optimize_image` with the settings of
``conf/optimize.yaml`` and ``conf/loss/perceptual.yaml`` (any of them can be changed with
``--set key=value``, as on the ``python -m fastnst.optimize`` command line). By default the
loss network is VGG16 with ``../shared/models/vgg16_features.pth``, L-BFGS for 100 steps at
256 px.

For each painting and photo it records, in ``survey.csv``: the style term of the untouched
photo and of the result (both unweighted), how many times the optimisation reduced it, the
content term, and each style layer's remaining relative error (which scale of the painting was
not reached). For each painting it also records the *channel concentration* of its Gram
matrices: the effective number of channels carrying its feature energy, as a fraction of all
channels (``(sum e)^2 / sum e^2 / C`` over the per-channel energies ``e``, averaged over the
style layers); flat-colour paintings put their energy into few channels.

Outputs already made with the same settings are reused, so an interrupted survey continues
where it stopped. ``--sheet`` writes the contact sheet (painting | result on each photo, with
the numbers) as a JPEG.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from common import SHARED
from PIL import Image, ImageDraw, ImageFont

from fastnst.images import find_images, load_image, save_image
from fastnst.losses import relative_sq_error

DEFAULT_PHOTOS = [
    SHARED / "data" / "content" / "tubingen.jpg",
    SHARED / "data" / "coco" / "val2017" / "000000000139.jpg",
]
DEFAULT_SET = [
    "loss.network=vgg16",
    f"loss.vgg_weights={SHARED / 'models' / 'vgg16_features.pth'}",
    "optimizer=lbfgs",
    "steps=100",
    "size=256",
]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from fastnst.jobs import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose("optimize", overrides=overrides)


def build_loss(cfg, style_path: Path):
    """The loss exactly as ``python -m fastnst.optimize`` builds it from ``cfg``."""
    from omegaconf import OmegaConf

    from fastnst.style_loss import style_loss

    style = OmegaConf.to_container(cfg.style, resolve=True)
    return style_loss([style], OmegaConf.to_container(cfg.loss, resolve=True), [style_path])


@torch.no_grad()
def layer_errors(loss, image: torch.Tensor) -> list[float]:
    """Each style layer's relative error ||stat - target||^2 / ||target||^2 for ``image``."""
    feats = loss.vgg(image, loss.style_layers)
    return [
        relative_sq_error(loss.style_stat(feats[name]), target).item()
        for name, target in zip(loss.style_layers, loss.style_targets(), strict=True)
    ]


@torch.no_grad()
def channel_concentration(loss, painting: torch.Tensor) -> float:
    """Effective fraction of channels carrying the painting's energy, averaged over layers."""
    feats = loss.vgg(painting.unsqueeze(0), loss.style_layers)
    fractions = []
    for name in loss.style_layers:
        energy = feats[name].float().pow(2).mean(dim=(0, 2, 3))
        effective = energy.sum().pow(2) / energy.pow(2).sum().clamp_min(1e-30)
        fractions.append((effective / energy.numel()).item())
    return sum(fractions) / len(fractions)


def run_one(cfg, loss, photo: Path, out_png: Path) -> dict:
    from fastnst.optimize import optimize_image

    content = load_image(photo, cfg.size).unsqueeze(0)
    before = layer_errors(loss, content)
    start = time.perf_counter()
    result = optimize_image(
        loss,
        content,
        cfg.steps,
        cfg.optimizer,
        cfg.lr,
        cfg.init,
        cfg.seed,
        log_every=max(cfg.steps, 1),
        progress=False,
    )
    seconds = time.perf_counter() - start
    after = layer_errors(loss, result.image)
    terms = result.history[-1].terms
    save_image(result.image, out_png)
    # The normalised style term, unweighted, whatever loss.normalize says: comparable across
    # paintings and settings.
    weights = loss.style_layer_weights
    style_before = sum(w * e for w, e in zip(weights, before, strict=True)) / len(before)
    style_after = sum(w * e for w, e in zip(weights, after, strict=True)) / len(after)
    return {
        "photo_style": style_before,
        "style": style_after,
        "reduced": style_before / max(style_after, 1e-30),
        "content": terms.get("content", 0.0) / (loss.weights["content"] or 1.0),
        "seconds": round(seconds, 1),
        **{f"left_{name}": e for name, e in zip(loss.style_layers, after, strict=True)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles-dir", type=Path, default=SHARED / "data" / "styles")
    parser.add_argument(
        "--styles", nargs="*", help="painting names (file stems) to run; default all"
    )
    parser.add_argument("--photos", type=Path, nargs="+", default=DEFAULT_PHOTOS)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="optimize/style/loss settings, after the survey's defaults: " + " ".join(DEFAULT_SET),
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sheet", type=Path, help="write the contact sheet here (.jpg)")
    parser.add_argument("--title", default="", help="a line above the contact sheet")
    parser.add_argument("--thumb", type=int, default=150, help="contact sheet tile size (px)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    paintings = find_images(args.styles_dir)
    if args.styles:
        wanted = set(args.styles)
        paintings = [p for p in paintings if p.stem in wanted]
        missing = wanted - {p.stem for p in paintings}
        if missing:
            parser.error(f"no painting named {', '.join(sorted(missing))} in {args.styles_dir}")
    args.out.mkdir(parents=True, exist_ok=True)
    settings = DEFAULT_SET + list(args.set)
    rows: list[dict] = []
    for n, painting in enumerate(paintings, 1):
        cfg = compose(settings + [f"style.image={painting}", f"style.name={painting.stem}"])
        loss = build_loss(cfg, painting)
        concentration = channel_concentration(loss, load_image(painting, cfg.style.size))
        for photo in args.photos:
            out_png = args.out / photo.stem / f"{painting.stem}.png"
            record = out_png.with_suffix(".json")
            key = {"settings": settings, "painting": str(painting), "photo": str(photo)}
            if out_png.exists() and record.exists():
                saved = json.loads(record.read_text())
                if saved.get("key") == key:
                    rows.append(saved["row"])
                    print(f"[{n}/{len(paintings)}] {painting.stem} on {photo.stem}: done before")
                    continue
            out_png.parent.mkdir(parents=True, exist_ok=True)
            row = {"painting": painting.stem, "photo": photo.stem, "concentration": concentration}
            row.update(run_one(cfg, loss, photo, out_png))
            record.write_text(json.dumps({"key": key, "row": row}, indent=1))
            rows.append(row)
            print(
                f"[{n}/{len(paintings)}] {painting.stem} on {photo.stem}: style "
                f"{row['photo_style']:.3f} -> {row['style']:.3f} ({row['reduced']:.1f}x), "
                f"content {row['content']:.3f}, {row['seconds']:.0f} s",
                flush=True,
            )
    with open(args.out / "survey.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(summary(rows))
    (args.out / "summary.md").write_text(summary(rows))
    if args.sheet:
        contact_sheet(rows, paintings, args.photos, args.out, args.sheet, args.thumb, args.title)
        print(f"contact sheet: {args.sheet} ({args.sheet.stat().st_size // 1024} KB)")


def summary(rows: list[dict]) -> str:
    layers = [k for k in rows[0] if k.startswith("left_")]
    lines = [
        "| painting | photo | photo's style | result's style | reduced | content | "
        "concentration | " + " | ".join(k[5:] for k in layers) + " |",
        "|---" * (7 + len(layers)) + "|",
    ]
    for r in sorted(rows, key=lambda r: (r["photo"], -r["style"])):
        lines.append(
            f"| {r['painting']} | {r['photo']} | {r['photo_style']:.3f} | {r['style']:.3f} | "
            f"{r['reduced']:.1f}x | {r['content']:.3f} | {r['concentration']:.2f} | "
            + " | ".join(f"{r[k]:.3f}" for k in layers)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _tile(path: Path, size: int) -> Image.Image:
    img = Image.open(path).convert("RGB")
    img.thumbnail((size, size), Image.LANCZOS)
    tile = Image.new("RGB", (size, size), "white")
    tile.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return tile


def contact_sheet(rows, paintings, photos, out: Path, sheet: Path, size: int, title: str) -> None:
    """Rows of paintings: the painting, then its result on each photo, each under a label."""
    font = ImageFont.load_default()
    label, pad = 14, 4
    by = {(r["painting"], r["photo"]): r for r in rows}
    cols = 1 + len(photos)
    head = 18 if title else 0
    cell_h = size + label + pad
    width = cols * (size + pad) + pad
    height = head + (1 + len(paintings)) * cell_h + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 3), title, fill="black", font=font)

    def put(col: int, row: int, tile: Image.Image, text: str) -> None:
        x, y = pad + col * (size + pad), head + row * cell_h
        canvas.paste(tile, (x, y))
        draw.text((x + 2, y + size + 1), text, fill="black", font=font)

    for c, photo in enumerate(photos, 1):
        put(c, 0, _tile(photo, size), photo.stem[:24])
    for r, painting in enumerate(paintings, 1):
        put(0, r, _tile(painting, size), painting.stem[:24])
        for c, photo in enumerate(photos, 1):
            row = by[(painting.stem, photo.stem)]
            put(
                c,
                r,
                _tile(out / photo.stem / f"{painting.stem}.png", size),
                f"style {row['style']:.2f} ({row['reduced']:.0f}x) content {row['content']:.2f}",
            )
    sheet.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(sheet, quality=80, optimize=True)


if __name__ == "__main__":
    main()
