"""The training system: a TransformerNet trained against a PerceptualLoss."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid

from fastnst import checkpoint as ckpt_format
from fastnst.checks import check_number, require, settings_of
from fastnst.errors import ConfigError, NonFiniteLossError
from fastnst.losses import sum_of_terms
from fastnst.monitoring import RunLogger
from fastnst.motion import MotionRange, stability_term
from fastnst.style_loss import check_style, style_loss
from fastnst.transformer import TransformerNet

GRID_IMAGES = 8
LR_SCHEDULES = ("constant", "cosine")
# The temporal group's settings (conf/config.yaml): the stability term is off at weight 0.
TEMPORAL_DEFAULTS = {"weight": 0.0, "shift": 2.0, "rotate": 1.0, "zoom": 0.02, "noise": 0.02}
# The style group's settings a caller may leave out (conf/style/*.yaml has them all).
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


class StyleTransferModule(pl.LightningModule):
    """Trains a :class:`TransformerNet` for one style, or for several in one network.

    All arguments are plain values (they are saved in the checkpoint's ``hyper_parameters``), so
    the checkpoint alone rebuilds the network: ``TransformerNet(**hparams["model"])`` with the
    ``net.*`` weights. The VGG is not saved; it is rebuilt from ``loss["vgg_weights"]``.

    Args:
        style: the painting, as the ``style`` config group: ``name`` (for logs and output
            files), ``image`` (a file) or ``url`` and ``sha256`` (fetched once into the cache),
            ``size`` (long side in pixels when its statistics are taken; None: as it is) and
            ``weight`` (of the style term). A path alone is a painting named after its file.
            A list of two or more of them: one network for all (conditional instance norm,
            :class:`fastnst.transformer.InstanceNorm`); the i-th photo of training step t is
            painted in style (t * batch + i) mod n, so every style is trained at every step
            (when the batch has at least as many photos as there are styles) and all equally
            often.
        base: a trained checkpoint to add the painting(s) of ``style`` to: only their own
            norm scales and shifts are trained (each starts as the mean of the styles already
            there); every other weight, and the other styles, stay exactly as they were.
            ``model`` is then the base's.
        model: keyword arguments of :class:`TransformerNet`.
        loss: keyword arguments of :class:`PerceptualLoss` (but the style image and weight).
        lr: Adam learning rate (the peak one under a schedule).
        lr_schedule: ``constant``, or ``cosine``: from ``lr`` down to 0 over the run's
            ``trainer.max_steps`` (after the warm-up), one value per step.
        lr_warmup: steps over which the learning rate rises linearly to ``lr`` first.
        temporal: the stability term (:func:`fastnst.motion.stability_term`): ``weight``
            (0: off, nothing computed) and the random motions' range, ``shift`` (px),
            ``rotate`` (degrees), ``zoom`` (relative) and ``noise`` (std).

    Raises:
        ConfigError: a setting that cannot work, named by its config key.
    """

    def __init__(
        self,
        style: Mapping[str, Any] | str | list[Mapping[str, Any] | str],
        model: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        lr: float = 1e-3,
        temporal: Mapping[str, Any] | None = None,
        base: str | None = None,
        lr_schedule: str = "constant",
        lr_warmup: int = 0,
    ) -> None:
        super().__init__()
        styles = [style] if isinstance(style, Mapping | str | Path) else list(style)
        require(len(styles) > 0, "styles", "is an empty list")
        styles = [check_style(_as_style(s)) for s in styles]
        names = [str(s["name"]) for s in styles]
        repeated = sorted({n for n in names if names.count(n) > 1})
        require(not repeated, "styles", f"name a style twice: {', '.join(repeated)}")
        base_net, base_names = None, []
        if base is not None:
            with settings_of("add_to"):
                base_net, base_meta = ckpt_format.load_with_metadata(base)
            base_names = ckpt_format.style_names(base_meta)
            model = base_net.settings()
            taken = sorted(set(names) & set(base_names))
            require(
                not taken,
                "add_to",
                f"{base} already holds {', '.join(taken)}; give the new style another name",
            )
        # One style, not added to a checkpoint: today's network and checkpoints exactly.
        self.multi = base is not None or len(styles) > 1
        if self.multi and base is None:
            model = {**(model or {}), "num_styles": len(styles)}
        style_hparam: Any = styles if self.multi else styles[0]
        temporal = {**TEMPORAL_DEFAULTS, **(temporal or {})}
        hparams = {"style": style_hparam, "model": model, "loss": loss, "lr": lr}
        if base is not None:
            hparams["base"] = str(base)
            hparams["model"] = {**model, "num_styles": base_net.num_styles + len(styles)}
        if temporal["weight"]:
            hparams["temporal"] = temporal  # checkpoints of runs without it stay as they were
        require(
            lr_schedule in LR_SCHEDULES,
            "lr_schedule",
            f"must be one of {LR_SCHEDULES}, got {lr_schedule!r}",
        )
        check_number(lr_warmup, "lr_warmup", 0, integer=True)
        if lr_schedule != "constant" or lr_warmup:  # as temporal: old checkpoints unchanged
            hparams["lr_schedule"], hparams["lr_warmup"] = lr_schedule, int(lr_warmup)
        self.save_hyperparameters(hparams)
        unknown = set(temporal) - set(TEMPORAL_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"temporal.{sorted(unknown)[0]}",
                f"is not a setting; the settings are {', '.join(TEMPORAL_DEFAULTS)}",
            )
        for key, value in temporal.items():
            check_number(value, f"temporal.{key}", 0)
        self.temporal_weight = float(temporal["weight"])
        self.motion = MotionRange(
            float(temporal["shift"]),
            float(temporal["rotate"]),
            float(temporal["zoom"]),
            float(temporal["noise"]),
        )
        self.style_name = "+".join(base_names + names) if self.multi else names[0]
        # Every style the network holds, and the ones this run trains (the last ones).
        self.style_names = base_names + names
        self.trained_styles = names
        check_number(lr, "lr", 0, strict=True)
        if base_net is not None:
            self.net = base_net.train()
            self.net.add_styles(len(names))
            self._freeze_all_but(len(base_names))
        else:
            with settings_of("model"):
                self.net = TransformerNet(**(model or {}))
        # Every setting is checked; now the paintings (maybe downloads) and the VGG.
        self.loss = style_loss(styles, loss)
        # The VGG weights are not in the checkpoint (see on_save_checkpoint).
        self.strict_loading = False
        self._input_style: dict[int, torch.Tensor] = {}
        # First step whose loss was NaN/inf, or -1. Kept on the device and read only at log
        # steps and before a checkpoint is written, so the step itself never waits on the host.
        self.register_buffer("_nonfinite_step", torch.tensor(-1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _freeze_all_but(self, first_new: int) -> None:
        """Adding styles: only the rows of the norms' scales and shifts from ``first_new`` on
        get gradients; the others are zeroed, so Adam leaves those rows exactly as they were."""
        for param in self.net.parameters():
            param.requires_grad_(False)
        keep = torch.zeros(self.net.num_styles, 1)
        keep[first_new:] = 1.0
        for param in self.net.style_parameters():
            param.requires_grad_(True)
            param.register_hook(lambda grad: grad * keep.to(grad))

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
        temporal = ["temporal"] if self.temporal_weight > 0 else []
        return [*self.loss.active_terms, *temporal, "total"]

    def on_fit_start(self) -> None:
        if isinstance(self.logger, RunLogger):  # train and val of each term on one chart
            styles = self.trained_styles if self.multi else []
            self.logger.layout(self.terms_logged, styles)

    def _add_temporal(
        self, terms: dict[str, torch.Tensor], batch: torch.Tensor, output: torch.Tensor, seed: int
    ) -> dict[str, torch.Tensor]:
        """The stability term, weighted, before ``total`` (which then includes it). Its random
        motions come from a generator seeded by ``seed``, so a resumed run draws the same."""
        if self.temporal_weight <= 0:
            return terms
        generator = torch.Generator().manual_seed(seed + 1_000_003 * torch.initial_seed() % 2**62)
        term = stability_term(self.net, batch, output, self.motion, generator)
        terms = {k: v for k, v in terms.items() if k != "total"}
        terms["temporal"] = self.temporal_weight * term
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
            terms = self._add_temporal(terms, batch, output, seed=seed)
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
        optimizer = torch.optim.Adam(trained, lr=self.hparams.lr)
        schedule = self.hparams.get("lr_schedule", "constant")
        warmup = int(self.hparams.get("lr_warmup", 0))
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


def lr_factor(step: int, warmup: int, schedule: str, total: int) -> float:
    """The learning rate of step ``step`` as a fraction of the peak: linear warm-up over
    ``warmup`` steps, then constant or a cosine down to 0 at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine" and total > warmup:
        progress = min(1.0, (step - warmup) / (total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _as_style(style: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A style entry: a mapping of the style group's keys, or a painting's path (named after
    its file)."""
    if isinstance(style, Mapping):
        return dict(style)
    return {"name": Path(style).stem, "image": str(style)}
