"""Train a style network: ``python -m fastnst.train style=starry_night``.

Config groups live in ``conf/`` (style, data, model, loss, trainer); see the README.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from fastnst.config import ConfigError, check_train
from fastnst.data import ContentDataModule, DataNotFoundError
from fastnst.download import DownloadError, style_image_path
from fastnst.images import ImageReadError
from fastnst.module import NonFiniteLossError, StyleTransferModule
from fastnst.vgg import VGGWeightsError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# Errors that are the user's to fix: reported in one line, without a traceback. A ConfigError
# (a subclass of ValueError) exits with status 2, the others with 1.
USER_ERRORS = (
    DataNotFoundError,
    DownloadError,
    ImageReadError,
    VGGWeightsError,
    NonFiniteLossError,
    ValueError,
)


def build(
    cfg: DictConfig, out_dir: Path
) -> tuple[StyleTransferModule, ContentDataModule, pl.Trainer]:
    """The three objects of a training run, from a composed config.

    The config is checked first (:func:`fastnst.config.check_train`), so a bad value fails in
    one line before the dataset scan or the VGG build.
    """
    check_train(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = ContentDataModule(**OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    module = StyleTransferModule(
        style_image=str(style_image_path(cfg.style)),
        style_name=cfg.style.name,
        style_size=cfg.style.size,
        style_weight=cfg.style.weight,
        model=OmegaConf.to_container(cfg.model, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        lr=cfg.lr,
    )
    checkpoints = ModelCheckpoint(
        dirpath=Path(cfg.checkpoint_dir) / cfg.style.name,
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint_every,
        save_last=True,
        # Keep the newest `checkpoint_keep` (Lightning writes each file atomically).
        monitor="step",
        mode="max",
        save_top_k=cfg.checkpoint_keep,
    )
    logger = TensorBoardLogger(save_dir=str(out_dir), name="tensorboard", version="")
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=str(out_dir),
        logger=logger,
        callbacks=[checkpoints],
    )
    return module, datamodule, trainer


def save_final(trainer: pl.Trainer, path: Path) -> None:
    """Write the trained network (no optimiser state) to ``path`` atomically.

    A model already at ``path`` from an earlier run is kept under a dated name, not lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    # Collective under DDP: every rank calls it, rank 0 alone writes.
    trainer.save_checkpoint(partial, weights_only=True)
    if not trainer.is_global_zero:
        return
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        os.replace(path, path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
    os.replace(partial, path)


def resume_path(cfg: DictConfig) -> Path | None:
    """The checkpoint named by ``resume``: ``last``, a path, or none (``null``)."""
    if not cfg.get("resume"):
        return None
    if cfg.resume == "last":
        path = Path(cfg.checkpoint_dir) / cfg.style.name / "last.ckpt"
        if not path.is_file():
            raise ConfigError(f"resume=last: no checkpoint at {path} to resume from")
        return path
    path = Path(cfg.resume).expanduser()
    if not path.is_file():
        raise ConfigError(f"resume: {path} does not exist")
    return path


def train(cfg: DictConfig, out_dir: Path) -> Path:
    """Run one training job; return the path of the trained model."""
    resume = resume_path(cfg)
    module, datamodule, trainer = build(cfg, out_dir)
    if resume is not None:
        print(f"Resuming from {resume}")
    name = cfg.style.name
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    except NonFiniteLossError as exc:
        last = Path(cfg.checkpoint_dir) / name / "last.ckpt"
        where = f"; the last good checkpoint is {last} (resume=last)" if last.is_file() else ""
        raise NonFiniteLossError(f"{exc}{where}") from None
    if trainer.interrupted:
        final = Path(cfg.checkpoint_dir) / name / "interrupted.ckpt"
    else:
        final = Path(cfg.checkpoint_dir) / f"{name}.ckpt"
    save_final(trainer, final)
    if not trainer.is_global_zero:
        return final
    skipped = datamodule.num_skipped
    experiment = getattr(trainer.logger, "experiment", None)
    if hasattr(experiment, "add_scalar"):
        experiment.add_scalar("data/skipped_files", skipped, trainer.global_step)
        experiment.flush()
    if skipped:
        files = datamodule.skipped_files()
        shown = ", ".join(str(p) for p in files[:5]) + (", ..." if len(files) > 5 else "")
        print(f"Skipped {skipped} unreadable image file(s): {shown}")
    state = "Interrupted at" if trainer.interrupted else "Trained"
    print(f"{state} step {trainer.global_step}. Model: {final}")
    print(f"TensorBoard logs: {out_dir / 'tensorboard'}  (tensorboard --logdir {out_dir})")
    print(f"Stylize a photo: fastnst-stylize {final} photo.jpg -o photo_{name}.jpg")
    return final


def run_reporting_errors(job: Callable[[DictConfig, Path], object], cfg: DictConfig) -> None:
    """Run a Hydra job in its output folder; a user error becomes one ``error:`` line and exit
    status 2 (bad settings) or 1 (anything else). HYDRA_FULL_ERROR=1 shows the traceback."""
    try:
        job(cfg, Path(HydraConfig.get().runtime.output_dir))
    except USER_ERRORS as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(train, cfg)


if __name__ == "__main__":
    main()
