"""Per-image optimisation (Gatys, Ecker & Bethge 2016), the fast network's quality yardstick.

    python -m fastnst.optimize content=photo.jpg style=starry_night

The output image starts as a copy of the content image (or noise) and is itself optimised
against the same :class:`~fastnst.losses.PerceptualLoss` the trainer uses; the style and
content targets are computed once and detached. Shares the ``style/`` and ``loss/`` config
groups with training, so ``loss.tap=conv`` or ``loss.style_stat=covariance`` work the same.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from fastnst import commands
from fastnst.checks import check_number, require
from fastnst.devices import pick_device
from fastnst.errors import ConfigError
from fastnst.files import check_writable_folder
from fastnst.images import image_format, load_image, save_image
from fastnst.jobs import CONF_DIR, expand_paths, run_job
from fastnst.losses import PerceptualLoss
from fastnst.style_loss import style_loss
from fastnst.vgg import MIN_IMAGE_SIZE

OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "noise")
# Learning rates for pixels in [0, 1]: Adam moves each pixel by about lr per step.
DEFAULT_LR = {"adam": 0.02, "lbfgs": 1.0}

StepCallback = Callable[[int, dict[str, float], torch.Tensor], None]


@dataclass
class Record:
    """Loss terms of the image after ``step`` updates; ``seconds`` of optimisation so far."""

    step: int
    terms: dict[str, float]
    seconds: float


@dataclass
class Result:
    image: torch.Tensor
    history: list[Record] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        last = self.history[-1]
        return last.seconds / max(last.step, 1)


def initial_image(content: torch.Tensor, init: str, seed: int = 0) -> torch.Tensor:
    """``content``: an exact copy of the content image; ``noise``: uniform noise (seeded)."""
    if init == "content":
        return content.detach().clone(memory_format=torch.contiguous_format)
    if init == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content.device)
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def optimize_image(
    loss: PerceptualLoss,
    content: torch.Tensor,
    steps: int,
    optimizer: str = "adam",
    lr: float | None = None,
    init: str = "content",
    seed: int = 0,
    log_every: int = 1,
    on_log: StepCallback | None = None,
    progress: bool = True,
    stop_below: float | None = None,
    min_steps: int = 0,
) -> Result:
    """Optimise an image against ``loss`` for ``steps`` updates.

    The terms of the image after ``t`` updates are recorded for ``t = 0, log_every, ...,
    steps``; ``on_log(t, terms, image)`` is called with each (its time is not counted in
    ``Record.seconds``). Pixels are kept in [0, 1] after every update.

    Args:
        loss: the perceptual loss; its style targets are fixed.
        content: the content image, 1x3xHxW in [0, 1].
        steps: number of optimiser updates.
        optimizer: ``"adam"`` or ``"lbfgs"`` (one L-BFGS iteration per step).
        lr: learning rate (default: 0.02 for Adam, 1.0 for L-BFGS).
        stop_below: stop as soon as a logged step's total loss is at or below this (the last
            record is then that step's, and ``Result.image`` that step's image).
        min_steps: with ``stop_below``, stop no earlier than after this many updates (the
            records then hold both: the first step at or below ``stop_below``, and the loss
            after ``min_steps`` updates).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if steps < 0 or log_every < 1:
        raise ValueError("steps must be >= 0 and log_every >= 1")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    image = initial_image(content, init, seed).requires_grad_(True)
    targets = loss.content_targets(content)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam([image], lr=lr)
    else:
        # No early stop on small gradients: the loss scale depends on the weights and the VGG,
        # and the caller asked for a number of steps.
        opt = torch.optim.LBFGS(
            [image], lr=lr, max_iter=1, history_size=50, tolerance_grad=0.0, tolerance_change=0.0
        )

    result = Result(image)
    elapsed = 0.0

    def log(step: int, terms: dict[str, torch.Tensor], image_at_step: torch.Tensor) -> None:
        values = {k: v.detach().item() for k, v in terms.items()}  # a host sync: log steps only
        result.history.append(Record(step, values, elapsed))
        if on_log is not None:
            on_log(step, values, image_at_step)

    # L-BFGS has absolute thresholds inside (it skips curvature pairs with y.s < 1e-10), so
    # it sees the loss divided by its starting value; same minimum, scale-free.
    scale: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        terms = loss.terms(image, targets)
        if not scale:
            scale.append(1.0 / max(terms["total"].detach().item(), 1e-30))
        objective = terms["total"] * scale[0] if optimizer == "lbfgs" else terms["total"]
        objective.backward()
        closure.terms = terms  # type: ignore[attr-defined]
        return objective

    for step in tqdm(range(steps), desc="optimising", unit="step", disable=not progress):
        # The closure evaluates the image after `step` updates; keep that image to log it.
        logged = image.detach().clone() if step % log_every == 0 else None
        start = time.perf_counter()
        if optimizer == "adam":
            closure()
            opt.step()
        else:
            opt.step(closure)  # one iteration: one closure call, at the current image
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        took = time.perf_counter() - start
        elapsed += took
        if logged is not None:
            log(step, closure.terms, logged)  # type: ignore[attr-defined]
            below = stop_below is not None and result.history[-1].terms["total"] <= stop_below
            if below and step >= min_steps:
                # The image after `step` updates is good enough: the update just made went
                # past it, so neither it nor its time counts.
                result.history[-1].seconds = elapsed - took
                result.image = logged
                return result
    with torch.no_grad():
        log(steps, loss.terms(image, targets), image.detach())
    result.image = image.detach()
    return result


def check_optimize(cfg: DictConfig) -> None:
    """This job's own settings, in one line each before the VGG is built (exit status 2)."""
    if cfg.content is None:
        raise ConfigError("content", "give the photo to stylize: content=/path/to/photo.jpg")
    require(Path(cfg.content).expanduser().is_file(), "content", f"{cfg.content} does not exist")
    require(
        cfg.optimizer in OPTIMIZERS,
        "optimizer",
        f"must be one of {OPTIMIZERS}, got {cfg.optimizer!r}",
    )
    require(cfg.init in INITS, "init", f"must be one of {INITS}, got {cfg.init!r}")
    check_number(cfg.steps, "steps", 0, integer=True)
    check_number(cfg.log_every, "log_every", 1, integer=True)
    if cfg.size is not None:
        check_number(cfg.size, "size", MIN_IMAGE_SIZE, integer=True)
    if cfg.output:
        # Before optimising, not after: an output that cannot be written loses the work.
        try:
            image_format(cfg.output)
        except ValueError as exc:
            raise ConfigError("output", str(exc)) from None
        check_writable_folder(Path(cfg.output).expanduser().resolve().parent, "output")


def _run(cfg: DictConfig, out_dir: Path) -> Path:
    cfg = expand_paths(cfg)
    check_optimize(cfg)
    content_path = Path(cfg.content).expanduser()
    content = load_image(content_path, cfg.size).unsqueeze(0)
    device = pick_device()
    style = OmegaConf.to_container(cfg.style, resolve=True)
    loss = style_loss([style], OmegaConf.to_container(cfg.loss, resolve=True)).to(device)

    output = (
        Path(cfg.output) if cfg.output else out_dir / f"{content_path.stem}_{cfg.style.name}.png"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tensorboard"))
    with open(out_dir / "losses.csv", "w", newline="") as f:
        table = csv.writer(f)
        names = [*loss.active_terms, "total"]
        table.writerow(["step", *names])

        def on_log(step: int, terms: dict[str, float], image: torch.Tensor) -> None:
            if step % cfg.log_every == 0 or step == cfg.steps:
                table.writerow([step] + [f"{terms[k]:.6g}" for k in names])
                for k, v in terms.items():
                    writer.add_scalar(f"optimize/{k}", v, step)
            if cfg.snapshot_every and (step % cfg.snapshot_every == 0 or step == cfg.steps):
                save_image(image, out_dir / "snapshots" / f"step{step:05d}.png")

        result = optimize_image(
            loss,
            content.to(device),
            cfg.steps,
            cfg.optimizer,
            cfg.lr,
            cfg.init,
            cfg.seed,
            # Called at every step that is logged, snapshotted or both.
            math.gcd(cfg.log_every, cfg.snapshot_every or cfg.log_every),
            on_log,
        )
    writer.add_image("optimize/result", result.image[0].clamp(0, 1).cpu(), cfg.steps)
    writer.close()
    save_image(result.image, output)
    first, last = result.history[0].terms, result.history[-1].terms
    print(
        f"total loss {first['total']:.4g} -> {last['total']:.4g} in {cfg.steps} steps "
        f"({result.seconds_per_step:.3f} s/step). Image: {output}"
    )
    print(
        f"Per-step losses: {out_dir / 'losses.csv'}; TensorBoard: {commands.tensorboard(out_dir)}"
    )
    return output


@hydra.main(config_path=str(CONF_DIR), config_name="optimize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(_run, cfg)


if __name__ == "__main__":
    main()
