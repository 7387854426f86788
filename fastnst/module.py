"""The training system: a TransformerNet trained against a PerceptualLoss."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid

from fastnst import checkpoint as ckpt_format
from fastnst.errors import NonFiniteLossError
from fastnst.losses import PerceptualLoss, sum_of_terms
from fastnst.monitoring import RunLogger
from fastnst.motion import StabilityTerm
from fastnst.transformer import TransformerNet

GRID_IMAGES = 8
LR_SCHEDULES = ("constant", "cosine")
# The frozen VGG stays in eval mode on purpose; Lightning would warn about it at every fit.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# fastnst's sampler resumes mid-epoch itself (data.ResumableSampler); Lightning cannot tell.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before")
# Lightning's all_gather uses a torch API that torch 2.14 deprecates.
warnings.filterwarnings("ignore", message=r"torch.distributed.nn.functional.all_gather is deprec")
# Lightning warns when an epoch has fewer batches than log_every_n_steps; it logs by global
# step, so with a small photo folder the curves are complete all the same.
warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller")
# Lightning's model summary cannot size parameters under bf16 autocast (trainer.precision=auto
# on CPUs with bf16 units) and says so at every fit; the summary itself is right.
warnings.filterwarnings("ignore", message=r"Precision bf16-mixed is not supported by the model")
# Lightning 2.6 calls a torch API that torch 2.14 deprecates; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class _NoAdvertising(logging.Filter):
    """Drops Lightning's start-up tip that advertises a cloud logging service."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg).lower()


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoAdvertising())


@dataclass(frozen=True)
class Optimiser:
    """Adam's settings: the (peak) learning rate, ``constant`` or ``cosine`` (down to 0 at the
    run's ``trainer.max_steps``) after ``warmup`` steps of linear warm-up."""

    lr: float
    schedule: str
    warmup: int


class StyleTransferModule(pl.LightningModule):
    """Trains a :class:`TransformerNet` for one style, or for several in one network; built by
    :func:`fastnst.train.build_module` from the config.

    The i-th photo of training step t is painted in trained style (t * batch + i) mod n and
    scored against that painting, so every style is trained at every step (when the batch has
    at least as many photos as there are styles) and all equally often; one style is the case
    n = 1.

    Args:
        net: the network; the rows of the styles this run trains are its last ``trained``
            ones (the others, of an ``add_to`` base, are frozen by the builder).
        loss: the perceptual loss holding the trained styles' paintings, in the same order.
        settings: the plain settings that rebuild the network, saved as the checkpoint's
            ``hyper_parameters`` (``style``, ``model``, ``loss``, ``lr``, ...).
        styles: the names of every style the network holds, in the order of its style mix.
        trained: how many of them (the last ones) this run trains.
        optimiser: Adam's settings.
        terms: further weighted loss terms (the stability term), each called as
            ``term(net, photos, outputs, seed)`` and added before ``total``.
    """

    def __init__(
        self,
        net: TransformerNet,
        loss: PerceptualLoss,
        settings: dict[str, Any],
        styles: list[str],
        trained: int,
        optimiser: Optimiser,
        terms: list[StabilityTerm] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(settings)
        self.net, self.loss, self.optimiser = net, loss, optimiser
        self.extra_terms = list(terms or [])
        self.style_names = list(styles)
        self.trained_styles = self.style_names[len(styles) - trained :]
        # Several styles, or styles added to a base: the checkpoint holds a list of them.
        self.multi = isinstance(settings["style"], list)
        self.style_name = "+".join(self.style_names) if self.multi else self.style_names[0]
        # The VGG weights are not in the checkpoint (see on_save_checkpoint).
        self.strict_loading = False
        self._input_style: dict[int, torch.Tensor] = {}
        # First step whose loss was NaN/inf, or -1. Kept on the device and read only at log
        # steps and before a checkpoint is written, so the step itself never waits on the host.
        self.register_buffer("_nonfinite_step", torch.tensor(-1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _style_ids(self, batch_size: int, step: int) -> list[int]:
        """Which of the trained styles each photo of a training batch is painted in: a round
        robin over the photos of consecutive steps (see the class)."""
        count = len(self.trained_styles)
        return [(step * batch_size + i) % count for i in range(batch_size)]

    def _mix(self, ids: list[int]) -> torch.Tensor:
        """One-hot style mixes (one row per photo) of trained styles ``ids``."""
        first = len(self.style_names) - len(self.trained_styles)
        rows = torch.tensor([first + i for i in ids], device=self.device)
        return torch.nn.functional.one_hot(rows, self.net.num_styles).float()

    @property
    def terms_logged(self) -> list[str]:
        return [*self.loss.active_terms, *(term.name for term in self.extra_terms), "total"]

    def on_fit_start(self) -> None:
        if isinstance(self.logger, RunLogger):  # train and val of each term on one chart
            styles = self.trained_styles if self.multi else []
            self.logger.layout(self.terms_logged, styles)

    def _add_terms(
        self, terms: dict[str, torch.Tensor], batch: torch.Tensor, output: torch.Tensor, seed: int
    ) -> dict[str, torch.Tensor]:
        """The further terms (the stability term), weighted, before ``total``, which then
        includes them."""
        if not self.extra_terms:
            return terms
        terms = {k: v for k, v in terms.items() if k != "total"}
        for term in self.extra_terms:
            terms[term.name] = term(self.net, batch, output, seed)
        terms["total"] = sum_of_terms(terms)
        return terms

    def _scored(
        self,
        batch: torch.Tensor,
        ids: list[int],
        seed: int,
        content_targets: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Photo *i* painted in trained style ``ids[i]`` and scored against that painting:
        (the outputs, each term per photo, the batch's terms with the stability term and
        ``total``). One style is the case of one painting: its mix is ignored by the network."""
        if content_targets is None:
            content_targets = self.loss.content_targets(batch)
        with self.net.styled(self._mix(ids)):
            output = self.net(batch)
            per_photo = self.loss.terms(
                output, content_targets, style_ids=torch.tensor(ids, device=self.device)
            )
            terms = {k: v.mean() for k, v in per_photo.items()}
            terms = self._add_terms(terms, batch, output, seed=seed)
        return output, per_photo, terms

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Each photo in its own style (see the class); with several styles each style's terms
        are logged under its name too (``train/<style>/<term>``)."""
        ids = self._style_ids(batch.shape[0], self.global_step)
        _, per_photo, terms = self._scored(batch, ids, seed=self.global_step)
        first_bad = (self._nonfinite_step < 0) & ~torch.isfinite(terms["total"])
        self._nonfinite_step = torch.where(
            first_bad, torch.full_like(self._nonfinite_step, self.global_step), self._nonfinite_step
        )
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=batch.shape[0])
        self.log("loss", terms["total"], prog_bar=True, logger=False, batch_size=batch.shape[0])
        if len(self.trained_styles) > 1:
            for index, name in enumerate(self.trained_styles):
                rows = [i for i, s in enumerate(ids) if s == index]
                if rows:
                    self.log_dict(
                        {f"train/{name}/{k}": v[rows].mean() for k, v in per_photo.items()},
                        batch_size=len(rows),
                    )
        return terms["total"]

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` if any step so far had a NaN/inf loss."""
        step = int(self._nonfinite_step)
        if step >= 0:
            raise NonFiniteLossError(
                f"the training loss became NaN or infinite at step {step}; training stopped and "
                "no checkpoint was written after it (lower lr, or check the data)"
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (self.global_step % self.trainer.log_every_n_steps) == 0:
            self.check_finite()

    def on_train_end(self) -> None:
        self.check_finite()
        if self.trainer.world_size > 1:
            self._check_replicas_agree()

    def _check_replicas_agree(self) -> None:
        """Under DDP every rank must end with the same weights; say so, or fail loudly."""
        flat = torch.cat([p.detach().flatten() for p in self.net.parameters()])
        gathered = self.all_gather(flat)  # world_size x n
        spread = (gathered - gathered[0]).abs().max().item()
        if spread != 0.0:
            raise RuntimeError(f"DDP ranks ended with different weights (max difference {spread})")
        if self.trainer.is_global_zero:
            print(f"DDP: the network's weights are identical on all {len(gathered)} ranks")

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """Each trained style on every held-out photo: the terms under ``val/<term>`` (with
        several styles their mean, and each style's under ``val/<style>/<term>``), plus
        ``style_input``, the style term of the untouched photos; images of the first batch."""
        content_targets = self.loss.content_targets(batch)
        n = batch.shape[0]
        if batch_idx not in self._input_style:
            # How far the unmodified photos are from each painting: the style term a network
            # that changed nothing would get. Constant, so computed once.
            every = torch.arange(len(self.trained_styles), device=self.device)
            self._input_style[batch_idx] = torch.stack(
                [
                    self.loss.terms(batch, content_targets, style_ids=s.repeat(n))["style"].mean()
                    for s in every
                ]
            )
        several = len(self.trained_styles) > 1
        logged: dict[str, list[torch.Tensor]] = {}
        outputs = []
        for index, name in enumerate(self.trained_styles):
            # The same motions at every validation: the curve shows the network, not the draw.
            output, _, terms = self._scored(batch, [index] * n, 2**40 + batch_idx, content_targets)
            terms["style_input"] = self._input_style[batch_idx][index]
            for key, value in terms.items():
                logged.setdefault(key, []).append(value)
                if several:
                    self.log(f"val/{name}/{key}", value, batch_size=n, sync_dist=True)
            outputs.append(output[:GRID_IMAGES])
        for key, values in logged.items():
            self.log(f"val/{key}", torch.stack(values).mean(), batch_size=n, sync_dist=True)
        if batch_idx == 0:
            self._log_images(batch[:GRID_IMAGES], outputs)

    def _log_images(self, photos: torch.Tensor, outputs: list[torch.Tensor]) -> None:
        """One style: rows of (photo | stylized) under ``val/content_stylized``. Several: the
        photos in the first row, then one row per style (``val/photos_then_one_row_per_style``)."""
        experiment = getattr(self.logger, "experiment", None)
        if not hasattr(experiment, "add_image") or self.trainer.sanity_checking:
            return
        if len(outputs) == 1:
            images = torch.stack([photos, outputs[0]], dim=1).flatten(0, 1)
            tag, columns = "val/content_stylized", 2
        else:
            images = torch.cat([photos, *outputs])
            tag, columns = "val/photos_then_one_row_per_style", photos.shape[0]
        grid = make_grid(images.float().clamp(0, 1).cpu(), nrow=columns, padding=2)
        experiment.add_image(tag, grid, self.global_step)

    def configure_optimizers(self) -> Any:
        trained = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trained, lr=self.optimiser.lr)
        schedule, warmup = self.optimiser.schedule, self.optimiser.warmup
        if schedule == "constant" and not warmup:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, schedule, self.trainer.max_steps)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Never write weights that a NaN/inf step may have spoiled.
        self.check_finite()
        # The frozen VGG (60-80 MB) is rebuilt from its weights setting; only the network
        # being trained goes into the file.
        ckpt_format.prepare(
            checkpoint,
            self.style_name,
            loss_network=self.loss.network,
            vgg_weights=str(self.loss.vgg_weights),
            styles=self.style_names if self.multi else None,
        )


def train_only_rows(net: TransformerNet, first: int) -> None:
    """Adding styles: only the rows of the norms' scales and shifts from ``first`` on get
    gradients; the others are zeroed, so Adam leaves those rows exactly as they were."""
    for param in net.parameters():
        param.requires_grad_(False)
    keep = torch.zeros(net.num_styles, 1)
    keep[first:] = 1.0
    for param in net.style_parameters():
        param.requires_grad_(True)
        param.register_hook(lambda grad: grad * keep.to(grad))


def lr_factor(step: int, warmup: int, schedule: str, total: int) -> float:
    """The learning rate of step ``step`` as a fraction of the peak: linear warm-up over
    ``warmup`` steps, then constant or a cosine down to 0 at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine" and total > warmup:
        progress = min(1.0, (step - warmup) / (total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
