"""Reproduce the origin document's experiments, and score them fairly.

    python scripts/compare_taps.py --content ../shared/data/content/tubingen.jpg \\
        --style ../shared/data/styles/starry_night.jpg --steps 100 --out outputs/compare/taps
    python scripts/compare_taps.py --compare stats ...      # Gram vs covariance
    python scripts/compare_taps.py --feedforward ...        # short training runs instead

Two arms differ in one loss setting (``--compare taps``: loss layers after ReLU vs after conv;
``--compare stats``: Gram vs covariance style statistics) and run with the same content, style,
seed, optimiser and number of steps. Each arm's *own* loss is what the origin document
tabulated; but losses read at conv and at ReLU outputs live on different scales, so that table
cannot say which arm made the better image. Every logged image of both arms is therefore also
scored by fixed yardsticks, the same loss function whichever arm made the image.

Writes to ``--out``: ``history.csv`` (one row per arm and logged step), ``summary.md`` (the
origin-style table, the fair table, seconds per step), ``plot.png`` and ``final.png``
(content | arm 1 | arm 2).
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import torch
from common import SHARED_DATA as SHARED  # noqa: E402
from torchvision.utils import make_grid

from fastnst.images import load_image, save_image
from fastnst.losses import PerceptualLoss
from fastnst.optimize import optimize_image

# name -> (arms, yardsticks); each a list of (label, PerceptualLoss keyword overrides).
COMPARISONS = {
    "taps": (
        [("relu", {"tap": "relu"}), ("conv", {"tap": "conv"})],
        [("yard_relu", {"tap": "relu"}), ("yard_conv", {"tap": "conv"})],
    ),
    "stats": (
        [("gram", {"style_stat": "gram"}), ("covariance", {"style_stat": "covariance"})],
        # The third yardstick is a statistic neither arm optimises.
        [
            ("yard_gram", {"style_stat": "gram"}),
            ("yard_cov", {"style_stat": "covariance"}),
            ("yard_meanstd", {"style_stat": "meanstd"}),
        ],
    ),
}


class Yardstick:
    """A fixed loss function: scores any image against the content and style targets."""

    def __init__(self, loss: PerceptualLoss, content: torch.Tensor) -> None:
        self.loss = loss
        self.targets = loss.content_targets(content)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        return {k: v.item() for k, v in self.loss.terms(images, self.targets).items()}


def score_row(
    arm: str,
    step: int,
    seconds: float,
    own: dict[str, float],
    yardsticks: dict[str, Yardstick],
    images: torch.Tensor,
) -> dict[str, float | int | str]:
    row: dict[str, float | int | str] = {"arm": arm, "step": step, "seconds": round(seconds, 4)}
    # Every term the loss computes (those with a weight) and their sum, in the loss's order.
    row.update({f"own_{k}": v for k, v in own.items()})
    for name, yardstick in yardsticks.items():
        row.update({f"{name}_{k}": v for k, v in yardstick(images).items()})
    return row


def main(argv: list[str] | None = None, default_compare: str = "taps") -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default=default_compare)
    parser.add_argument("--content", type=Path, default=SHARED / "content" / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    parser.add_argument("--size", type=int, default=256, help="long side of the images (px)")
    parser.add_argument("--style-size", type=int, default=256)
    parser.add_argument(
        "--style-weight",
        type=float,
        default=None,
        help="default: 3 with the normalised loss, 1e5 with --no-normalize",
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--init", choices=["content", "noise"], default="content")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--network", choices=["vgg19", "vgg16"], default="vgg19")
    parser.add_argument(
        "--vgg-weights",
        default="random",
        help="imagenet | random | path to a state_dict of --network (default: random)",
    )
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="terms relative to their targets (default); --no-normalize: the origin "
        "document's raw sums",
    )
    parser.add_argument(
        "--feedforward",
        action="store_true",
        help="compare short training runs of the feed-forward network instead",
    )
    parser.add_argument("--train-root", type=Path, default=SHARED / "coco" / "train2017")
    parser.add_argument(
        "--eval-root",
        type=Path,
        default=SHARED / "content",
        help="held-out photos scored in --feedforward mode",
    )
    parser.add_argument("--eval-count", type=int, default=4)
    parser.add_argument("--model", default="johnson", help="conf/model option (--feedforward)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.style_weight is None:
        args.style_weight = 3.0 if args.normalize else 1e5

    torch.manual_seed(args.seed)
    arms, yard_specs = COMPARISONS[args.compare]
    style = load_image(args.style, args.style_size)

    def make_loss(overrides: dict) -> PerceptualLoss:
        return PerceptualLoss(
            style,
            style_weight=args.style_weight,
            network=args.network,
            vgg_weights=args.vgg_weights,
            normalize=args.normalize,
            **overrides,
        )

    args.out.mkdir(parents=True, exist_ok=True)
    if args.feedforward:
        rows, finals, content = train_arms(args, arms, yard_specs, make_loss)
    else:
        content = load_image(args.content, args.size).unsqueeze(0)
        yardsticks = {name: Yardstick(make_loss(o), content) for name, o in yard_specs}
        rows, finals = optimise_arms(args, arms, make_loss, yardsticks, content)

    write_outputs(args, arms, yard_specs, rows, finals, content)


def optimise_arms(args, arms, make_loss, yardsticks, content):
    rows: list[dict] = []
    finals: dict[str, torch.Tensor] = {}
    for arm, overrides in arms:
        loss = make_loss(overrides)
        scored: list[dict] = []

        def on_log(step: int, own: dict, image: torch.Tensor, arm=arm, scored=scored) -> None:
            scored.append(score_row(arm, step, 0.0, own, yardsticks, image))

        start = time.perf_counter()
        result = optimize_image(
            loss,
            content,
            args.steps,
            args.optimizer,
            args.lr,
            args.init,
            args.seed,
            log_every=args.log_every,
            on_log=on_log,
            progress=not args.quiet,
        )
        for row, record in zip(scored, result.history, strict=True):
            row["seconds"] = round(record.seconds, 4)
        rows += scored
        finals[arm] = result.image
        if not args.quiet:
            print(
                f"{arm}: {args.steps} steps, {result.seconds_per_step:.3f} s/step "
                f"({time.perf_counter() - start:.1f} s with scoring)"
            )
    return rows, finals


def train_arms(args, arms, yard_specs, make_loss):
    """One short feed-forward training run per arm; the held-out photos are scored by the
    arm's own loss and by the yardsticks every ``--log-every`` steps."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from fastnst.data import val_transform
    from fastnst.images import find_images, read_image_uint8, uint8_to_float
    from fastnst.jobs import CONF_DIR
    from fastnst.train import build

    crop = val_transform(args.size)
    files = find_images(args.eval_root)[: args.eval_count]
    held_out = uint8_to_float(
        torch.stack([crop(read_image_uint8(p), random.Random(0)) for p in files])
    )
    yardsticks = {name: Yardstick(make_loss(o), held_out) for name, o in yard_specs}
    rows: list[dict] = []
    finals: dict[str, torch.Tensor] = {}

    class Score(pl.Callback):
        def __init__(self, arm: str) -> None:
            self.arm, self.train_seconds, self.last = arm, 0.0, 0.0

        def score(self, module, step: int) -> None:
            module.net.eval()
            with torch.no_grad():
                out = module.net(held_out)
                own = {k: v.item() for k, v in module.loss(out, held_out).items()}
            module.net.train()
            rows.append(score_row(self.arm, step, self.train_seconds, own, yardsticks, out))

        def on_train_start(self, trainer, module) -> None:
            self.score(module, 0)
            self.last = time.perf_counter()

        def on_train_batch_end(self, trainer, module, *_) -> None:
            self.train_seconds += time.perf_counter() - self.last
            step = trainer.global_step
            if step % args.log_every == 0 or step == args.steps:
                self.score(module, step)
            self.last = time.perf_counter()

    for arm, overrides in arms:
        overrides_list = [
            f"style.image={args.style.resolve()}",
            f"style.size={args.style_size}",
            f"style.weight={args.style_weight}",
            f"model={args.model}",
            f"data.root={args.train_root.resolve()}",
            f"data.image_size={args.size}",
            "data.num_workers=0",
            f"loss.network={args.network}",
            f"loss.vgg_weights={args.vgg_weights}",
            f"loss.normalize={args.normalize}",
            f"seed={args.seed}",
            f"trainer.max_steps={args.steps}",
            f"trainer.val_check_interval={args.steps}",
            f"trainer.enable_progress_bar={not args.quiet}",
            "trainer.enable_model_summary=false",
            f"checkpoint_dir={(args.out / arm / 'checkpoints').resolve()}",
        ] + [f"loss.{k}={v}" for k, v in overrides.items()]
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides_list)
        module, datamodule, trainer = build(cfg, args.out / arm)
        trainer.callbacks.append(Score(arm))
        trainer.fit(module, datamodule=datamodule)
        with torch.no_grad():
            finals[arm] = module.net.eval()(held_out[:1])
    return rows, finals, held_out[:1]


def write_outputs(args, arms, yard_specs, rows, finals, content) -> None:
    with open(args.out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(args, [a for a, _ in arms], [y for y, _ in yard_specs], rows)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    plot(args.out / "plot.png", [a for a, _ in arms], [y for y, _ in yard_specs], rows)
    images = [content[0]] + [finals[a][0] for a, _ in arms]
    save_image(
        make_grid(torch.stack(images).clamp(0, 1), nrow=len(images), padding=4, pad_value=1.0),
        args.out / "final.png",
    )


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def summarise(args, arms: list[str], yards: list[str], rows: list[dict]) -> str:
    by = {(r["arm"], r["step"]): r for r in rows}
    steps = sorted({r["step"] for r in rows})
    a, b = arms
    mode = "feed-forward training" if args.feedforward else f"{args.optimizer} on pixels"
    lines = [
        f"# {args.compare}: {a} vs {b}",
        "",
        f"{mode}, {args.steps} steps, size {args.size}, seed {args.seed}, "
        f"{args.network} weights: {args.vgg_weights}, "
        f"{'normalised' if args.normalize else 'origin (raw)'} loss, style weight "
        f"{args.style_weight:g}.",
        "",
        "## Each arm's own loss (the origin document's table)",
        "",
        f"| step | {a}: style | {a}: content | {b}: style | {b}: content |",
        "|---|---|---|---|---|",
    ]
    for s in steps:
        if s == 0:
            continue
        ra, rb = by[(a, s)], by[(b, s)]
        lines.append(
            f"| {s} | {_fmt(ra['own_style'])} | {_fmt(ra['own_content'])} | "
            f"{_fmt(rb['own_style'])} | {_fmt(rb['own_content'])} |"
        )
    for yard in yards:
        lines += [
            "",
            f"## Fair table: both arms scored by the same loss ({yard})",
            "",
            f"| step | {a}: style | {a}: content | {a}: total | {b}: style | {b}: content | "
            f"{b}: total | lower total |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in steps:
            ra, rb = by[(a, s)], by[(b, s)]
            ta, tb = ra[f"{yard}_total"], rb[f"{yard}_total"]
            lines.append(
                f"| {s} | {_fmt(ra[f'{yard}_style'])} | {_fmt(ra[f'{yard}_content'])} | "
                f"{_fmt(ta)} | {_fmt(rb[f'{yard}_style'])} | {_fmt(rb[f'{yard}_content'])} | "
                f"{_fmt(tb)} | {a if ta < tb else b if tb < ta else 'tie'} |"
            )
    last = steps[-1]
    lines += ["", "## Seconds per step", ""]
    for arm in arms:
        seconds = by[(arm, last)]["seconds"]
        lines.append(f"- {arm}: {seconds / max(last, 1):.4f} s/step ({seconds:.2f} s for {last})")
    return "\n".join(lines) + "\n"


def plot(path: Path, arms: list[str], yards: list[str], rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("own", "each arm's own loss")] + [(y, f"scored by {y}") for y in yards]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for arm in arms:
            pts = [(r["step"], r[f"{key}_total"]) for r in rows if r["arm"] == arm]
            pts = [(s, v) for s, v in pts if v > 0]
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker=".", label=arm)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("total loss")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
