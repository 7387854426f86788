"""Train a style network: ``python -m fastnst.train style=starry_night``.

Config groups live in ``conf/`` (style, data, model, loss, trainer); see the README.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from fastnst.data import ContentDataModule, DataNotFoundError
from fastnst.download import DownloadError, style_image_path
from fastnst.images import ImageReadError
from fastnst.module import StyleTransferModule
from fastnst.vgg import VGGWeightsError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# Errors that are the user's to fix: reported in one line, without a traceback.
USER_ERRORS = (DataNotFoundError, DownloadError, ImageReadError, VGGWeightsError, ValueError)

log = logging.getLogger("fastnst.train")


def build(
    cfg: DictConfig, out_dir: Path
) -> tuple[StyleTransferModule, ContentDataModule, pl.Trainer]:
    """The three objects of a training run, from a composed config.

    Cheap checks (data folder, style image) run before the VGG19 is built.
    """
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = ContentDataModule(**OmegaConf.to_container(cfg.data, resolve=True))
    datamodule.check_root()
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
        save_top_k=1,
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
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        os.replace(path, path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
    partial = path.with_name(path.name + ".part")
    trainer.save_checkpoint(partial, weights_only=True)
    os.replace(partial, path)


def train(cfg: DictConfig, out_dir: Path) -> Path:
    """Run one training job; return the path of the trained model."""
    module, datamodule, trainer = build(cfg, out_dir)
    trainer.fit(module, datamodule=datamodule)
    name = cfg.style.name
    if trainer.interrupted:
        final = Path(cfg.checkpoint_dir) / name / "interrupted.ckpt"
    else:
        final = Path(cfg.checkpoint_dir) / f"{name}.ckpt"
    save_final(trainer, final)
    if datamodule.num_skipped:
        print(f"Skipped {datamodule.num_skipped} unreadable image file(s) (warnings above).")
    state = "Interrupted at" if trainer.interrupted else "Trained"
    print(f"{state} step {trainer.global_step}. Model: {final}")
    print(f"TensorBoard logs: {out_dir / 'tensorboard'}  (tensorboard --logdir {out_dir})")
    print(f"Stylize a photo: fastnst-stylize {final} photo.jpg -o photo_{name}.jpg")
    return final


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train(cfg, out_dir)
    except USER_ERRORS as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
