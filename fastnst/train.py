"""Train a style network: ``python -m fastnst.train style=starry_night``.

Config groups live in ``conf/`` (style, data, model, loss, trainer); see docs/configuration.md.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from fastnst import checkpoint as ckpt_format
from fastnst import commands
from fastnst.checks import check_number, require, settings_of
from fastnst.data import ContentDataModule
from fastnst.devices import training_precision
from fastnst.errors import CheckpointError, ConfigError, NonFiniteLossError, Stopped, first_line
from fastnst.files import check_writable_folder, written_atomically
from fastnst.jobs import CONF_DIR, expand_paths, run_job
from fastnst.module import LR_SCHEDULES, Optimiser, StyleTransferModule, train_only_rows
from fastnst.monitoring import CleanStop, ProjectedTime, RunLogger, StepProgressBar
from fastnst.motion import MotionRange, StabilityTerm
from fastnst.shipped import model_path
from fastnst.style_loss import check_style, style_loss
from fastnst.text import printable
from fastnst.transformer import TransformerNet


def check_trainer(cfg: DictConfig) -> None:
    """The settings fastnst hands to Lightning's Trainer and ModelCheckpoint, whose own
    errors would not name the config key."""
    trainer = cfg.trainer
    for key in sorted(trainer):
        if key in SET_BY_FASTNST:
            raise ConfigError(f"trainer.{key}", "is set by fastnst itself")
        if key not in _trainer_settings():
            raise ConfigError(
                f"trainer.{key}",
                "is not a setting of Lightning's Trainer (docs/configuration.md lists the "
                "trainer group)",
            )
    max_steps = trainer.get("max_steps")
    require(
        _whole(max_steps) and (max_steps > 0 or max_steps == -1),
        "trainer.max_steps",
        f"must be a positive number of steps, got {max_steps!r}",
    )
    for key in ("log_every_n_steps", "accumulate_grad_batches"):
        value = trainer.get(key, 1)
        require(_whole(value) and value >= 1, f"trainer.{key}", f"must be 1 or more, got {value!r}")
    interval = trainer.get("val_check_interval")
    require(
        interval is None
        or (_whole(interval) and interval >= 1)
        or (isinstance(interval, float) and 0 < interval <= 1),
        "trainer.val_check_interval",
        f"must be a number of steps (1 or more) or a fraction of an epoch in (0, 1], "
        f"got {interval!r}",
    )
    if trainer.get("max_time") is not None:
        _check_max_time(trainer.max_time)
    seed = cfg.get("seed")
    require(
        _whole(seed) and 0 <= seed < 2**32,
        "seed",
        f"must be a whole number in 0..{2**32 - 1}, got {seed!r}",
    )
    schedule, warmup = cfg.get("lr_schedule"), cfg.get("lr_warmup")
    if schedule == "cosine":
        require(
            max_steps != -1,
            "lr_schedule",
            "cosine anneals to 0 at trainer.max_steps: give trainer.max_steps a number of steps",
        )
    if _whole(warmup) and warmup and max_steps != -1:
        require(
            warmup < max_steps,
            "lr_warmup",
            f"{warmup} steps of warm-up are not fewer than the run's "
            f"(trainer.max_steps={max_steps})",
        )
    accelerator = str(trainer.get("accelerator") or "auto").lower()
    devices = trainer.get("devices")
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count()
        require(available > 0, "trainer.accelerator", f"{accelerator}: no CUDA device is available")
        if isinstance(devices, int) and devices > available:
            raise ConfigError(
                "trainer.devices", f"{devices} devices asked for, {available} CUDA device(s) here"
            )
    if accelerator == "mps":
        require(
            torch.backends.mps.is_available(), "trainer.accelerator", "mps: MPS is not available"
        )
    check_number(cfg.checkpoint_every, "checkpoint_every", 1, integer=True)
    check_number(cfg.checkpoint_keep, "checkpoint_keep", 1, integer=True)


# Trainer arguments fastnst passes itself (a config value would collide with them).
SET_BY_FASTNST = ("logger", "callbacks", "plugins", "default_root_dir")


def _check_max_time(value: Any) -> None:
    """``trainer.max_time``: Lightning's DD:HH:MM:SS, and more than zero."""
    parts = re.fullmatch(r"(\d+):(\d{1,2}):(\d{1,2}):(\d{1,2})", str(value))
    if parts is None or not isinstance(value, str):
        raise ConfigError(
            "trainer.max_time",
            f"must be DD:HH:MM:SS, e.g. 00:00:05:00 for five minutes, got {value!r}",
        )
    days, hours, minutes, seconds = map(int, parts.groups())
    require(
        hours < 24 and minutes < 60 and seconds < 60,
        "trainer.max_time",
        f"{value}: hours must be below 24, minutes and seconds below 60",
    )
    require(
        days + hours + minutes + seconds > 0,
        "trainer.max_time",
        "is zero: the run would stop before its first step",
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _trainer_settings() -> set[str]:
    """The keyword arguments of Lightning's Trainer."""
    return set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}


# The keys of the style group a painting in ``styles`` takes from it unless it sets them.
STYLE_SHARED_KEYS = ("size", "weight", "scales")
# A run name longer than this (many styles joined) becomes "<first>+<n>_more".
MAX_NAME_CHARS = 80


def styles_of(cfg: DictConfig) -> list[dict[str, Any]] | None:
    """The paintings of ``styles`` (None when it is empty: the one of the style group), each
    a style-group mapping. An entry is a preset of ``conf/style`` (``wave``), a painting's
    file (named after it), or a mapping of style-group keys; files and mappings take
    ``size``, ``weight`` and ``scales`` from the style group unless they set them."""
    entries = cfg.get("styles") or []
    require(
        OmegaConf.is_list(entries) or isinstance(entries, list),
        "styles",
        f"must be a list of styles, e.g. styles=[starry_night,wave], got {entries!r}",
    )
    if not entries and not cfg.get("add_to"):
        return None
    shared = {key: cfg.style.get(key) for key in STYLE_SHARED_KEYS}
    styles = []
    for entry in entries:
        if OmegaConf.is_dict(entry):
            entry = OmegaConf.to_container(entry, resolve=True)
            require("image" in entry or "url" in entry, "styles", f"{entry}: needs image or url")
            name = entry.get("name") or Path(str(entry.get("image") or entry["url"])).stem
            styles.append({**shared, **entry, "name": name})
            continue
        text = str(entry)
        preset = CONF_DIR / "style" / f"{text}.yaml"
        if "/" not in text and "." not in text and preset.is_file():
            styles.append(OmegaConf.to_container(OmegaConf.load(preset), resolve=True))
            continue
        path = Path(text).expanduser()
        if not path.is_file():
            presets = sorted(p.stem for p in (CONF_DIR / "style").glob("*.yaml"))
            raise ConfigError(
                "styles",
                f"{text}: neither a preset ({', '.join(presets)}) nor a painting's file",
            )
        styles.append({**shared, "name": path.stem, "image": str(path)})
    if not styles:  # add_to with the style group's painting
        styles = [OmegaConf.to_container(cfg.style, resolve=True)]
    return styles


def run_name(cfg: DictConfig) -> str:
    """``name``, or what the run trains: the style's name, or the styles' names joined by
    ``+`` (after the base checkpoint's name when adding styles)."""
    if cfg.get("name"):
        return str(cfg.name)
    styles = styles_of(cfg)
    if styles is None:
        return str(cfg.style.name)
    names = [str(s["name"]) for s in styles]
    if cfg.get("add_to"):
        names.insert(0, Path(str(cfg.add_to)).stem)
    joined = "+".join(names)
    return joined if len(joined) <= MAX_NAME_CHARS else f"{names[0]}+{len(names) - 1}_more"


def _run_name_or_style(*, _root_: DictConfig) -> str:
    """conf/config.yaml's output folder names the run; a bad setting is reported later, in
    one line, by the run itself."""
    try:
        return run_name(_root_)
    except (ConfigError, KeyError, ValueError):
        return str(_root_.style.name)


OmegaConf.register_new_resolver("fastnst_run_name", _run_name_or_style, replace=True)


@dataclass(frozen=True)
class Run:
    """Where one training run's files go, resolved once from the config (by :func:`resolve`):
    every part of the run takes its paths from here."""

    name: str  # ``name``, or the style(s) it trains
    out_dir: Path  # Hydra's output folder: the log, TensorBoard
    folder: Path  # <checkpoint_dir>/<name>/: resumable checkpoints and the lock
    model: Path  # <checkpoint_dir>/<name>.ckpt: the trained network
    resume: Path | None  # the checkpoint this run goes on from

    @property
    def last(self) -> Path:
        return self.folder / "last.ckpt"

    @property
    def interrupted(self) -> Path:
        return self.folder / "interrupted.ckpt"

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"


def resolve(cfg: DictConfig, out_dir: Path) -> Run:
    """The run of a config whose paths are expanded (:func:`fastnst.jobs.expand_paths`).

    Raises:
        ConfigError: ``resume`` names no checkpoint.
    """
    name = run_name(cfg)
    run = Run(name, Path(out_dir), Path(cfg.checkpoint_dir) / name,
              Path(cfg.checkpoint_dir) / f"{name}.ckpt", resume=None)  # fmt: skip
    if cfg.get("resume") == "last":
        if not run.last.is_file():
            raise ConfigError("resume=last", f"no checkpoint at {run.last} to resume from")
        return replace(run, resume=run.last)
    if cfg.get("resume"):
        if not Path(cfg.resume).is_file():
            raise ConfigError("resume", f"{cfg.resume} does not exist")
        return replace(run, resume=Path(cfg.resume))
    return run


def _initial_network(init: str, count: int) -> TransformerNet:
    """The network of ``init`` (a checkpoint, or a shipped model's name) to start training
    from: its own architecture and weights; a one-style network gives every one of ``count``
    styles its norms' rows."""
    path = model_path(init)
    with settings_of("init"):
        net, _ = ckpt_format.load_network(path)
    shape = f"{net.base_channels} base channels, {net.num_residual_blocks} residual blocks"
    print(f"Starting from the network of {path} ({shape}; the model group is not used)")
    if net.num_styles == 1 and count > 1:
        net.add_styles(count - 1)
    require(
        net.num_styles == count,
        "init",
        f"{init} holds {net.num_styles} styles; this run trains {count}",
    )
    return net.train()


def build_module(cfg: DictConfig) -> StyleTransferModule:
    """The training system of a config: its network (new, or an ``add_to`` base with room for
    the new styles and only their rows training), its loss (the paintings' targets), the
    stability term, Adam's settings and the settings the checkpoint keeps. Every setting is
    checked before the paintings are read (or downloaded) and the VGG is built.

    Raises:
        ConfigError: a setting that cannot work, named by its config key.
    """
    styles = [check_style(s) for s in styles_of(cfg) or [cfg_dict(cfg.style)]]
    names = [str(s["name"]) for s in styles]
    repeated = sorted({n for n in names if names.count(n) > 1})
    require(not repeated, "styles", f"name a style twice: {', '.join(repeated)}")
    model, loss = cfg_dict(cfg.model), cfg_dict(cfg.loss)
    check_number(cfg.lr, "lr", 0, strict=True)
    schedule, warmup = cfg.lr_schedule, cfg.lr_warmup
    require(
        schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {LR_SCHEDULES}, got {schedule!r}"
    )
    check_number(warmup, "lr_warmup", 0, integer=True)
    temporal = cfg_dict(cfg.temporal)
    known = ["weight", *(f.name for f in fields(MotionRange))]
    unknown = sorted(set(temporal) - set(known))
    if unknown:
        raise ConfigError(
            f"temporal.{unknown[0]}", f"is not a setting; the settings are {', '.join(known)}"
        )
    for key, value in temporal.items():
        check_number(value, f"temporal.{key}", 0)
    add_to = cfg.get("add_to")
    require(not (add_to and cfg.get("init")), "init", "and add_to cannot be given together")
    base_names: list[str] = []
    if add_to:
        require(Path(str(add_to)).is_file(), "add_to", f"{add_to} does not exist")
        with settings_of("add_to"):
            net, base_meta = ckpt_format.load_with_metadata(add_to)
        base_names = ckpt_format.style_names(base_meta)
        taken = sorted(set(names) & set(base_names))
        require(
            not taken,
            "add_to",
            f"{add_to} already holds {', '.join(taken)}; give the new style another name",
        )
        model = {**net.settings(), "num_styles": net.num_styles + len(names)}
        net.train().add_styles(len(names))
        train_only_rows(net, len(base_names))
    elif cfg.get("init"):
        net = _initial_network(str(cfg.init), len(styles))
        model = net.settings()
    else:
        if len(styles) > 1:
            model = {**model, "num_styles": len(styles)}
        with settings_of("model"):
            net = TransformerNet(**model)
    # What the checkpoint keeps. One style, not added to a base: the layout of the first
    # releases (one style mapping, no num_styles); settings at their defaults are left out,
    # so checkpoints of runs without them stay as they were.
    several = bool(add_to) or len(styles) > 1
    settings: dict[str, Any] = {
        "style": styles if several else styles[0],
        "model": model,
        "loss": loss,
        "lr": cfg.lr,
    }
    if add_to:
        settings["base"] = str(add_to)
    if cfg.get("init"):
        settings["init"] = str(cfg.init)
    if schedule != "constant" or warmup:
        settings["lr_schedule"], settings["lr_warmup"] = schedule, int(warmup)
    terms = []
    if temporal["weight"]:
        settings["temporal"] = temporal
        motion = MotionRange(**{f.name: float(temporal[f.name]) for f in fields(MotionRange)})
        terms.append(StabilityTerm(float(temporal["weight"]), motion))
    return StyleTransferModule(
        net,
        style_loss(styles, loss),  # the paintings (maybe downloads) and the VGG, last
        settings,
        base_names + names,
        len(names),
        Optimiser(float(cfg.lr), schedule, int(warmup)),
        terms,
    )


def cfg_dict(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def build(
    cfg: DictConfig, out_dir: Path, run: Run | None = None
) -> tuple[StyleTransferModule, ContentDataModule, pl.Trainer]:
    """The three objects of a training run, from a composed config.

    Each setting is checked by the constructor that uses it, cheapest first (trainer, data,
    then the module: its network, its loss, and only then the painting's download and the
    VGG), so a bad value fails in one line before any download, VGG build or dataset scan.
    """
    cfg = expand_paths(cfg)  # a no-op when train() did it already
    check_trainer(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    with settings_of("data"):
        datamodule = ContentDataModule(**cfg_dict(cfg.data), seed=cfg.seed)
    run = run or resolve(cfg, out_dir)
    module = build_module(cfg)
    # Last, once every other setting is known to be good, and long before the first
    # checkpoint: a folder that cannot be written would otherwise lose the whole run.
    check_writable_folder(run.folder, "checkpoint_dir")
    checkpoints = ModelCheckpoint(
        dirpath=run.folder,
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint_every,
        save_last=True,
        # last.ckpt is always this run's latest state: never a stale copied file with a
        # last-v1.ckpt beside it that resume=last would not read.
        enable_version_counter=False,
        # Keep the newest `checkpoint_keep` (Lightning writes each file atomically).
        monitor="step",
        mode="max",
        save_top_k=cfg.checkpoint_keep,
    )
    logger = RunLogger(save_dir=str(run.out_dir), name="tensorboard", version="")
    callbacks: list[pl.Callback] = [checkpoints, ProjectedTime(), CleanStop()]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(StepProgressBar())
    settings = cfg_dict(cfg.trainer)
    settings["precision"], why = training_precision(
        settings.get("precision", "auto"), settings.get("accelerator")
    )
    if why != "as set" and os.environ.get("LOCAL_RANK", "0") == "0":
        print(f"Precision: {settings['precision']} ({why})")
    trainer = pl.Trainer(
        **settings,
        default_root_dir=str(run.out_dir),
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    return module, datamodule, trainer


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each file beside its place and renaming it
    there when complete: a full disk (or a kill) mid-write leaves the previous ``last.ckpt``
    whole instead of truncating it (Lightning's own writer opens the file for writing first)."""

    def save_checkpoint(self, checkpoint: dict, path: Any, storage_options: Any = None) -> None:
        with written_atomically(path) as partial:
            super().save_checkpoint(checkpoint, partial, storage_options)


def save_final(trainer: pl.Trainer, path: Path) -> None:
    """Write the trained network (no optimiser state) to ``path`` atomically.

    A model already at ``path`` from an earlier run is kept under a dated name, not lost.
    """
    # Collective under DDP: every rank calls it, rank 0 alone writes.
    writing = (
        written_atomically(path, keep_previous=True)
        if trainer.is_global_zero
        else nullcontext(path.with_name(path.name + ".other-rank"))
    )
    with writing as partial:
        trainer.save_checkpoint(partial, weights_only=True)


def settings_of_run(module: StyleTransferModule, datamodule: ContentDataModule) -> dict:
    """What makes a run this run: the module's settings and the training crops."""
    return {**dict(module.hparams), "data": datamodule.settings()}


def check_resume_matches(path: Path, now: dict, accept_changes: bool) -> None:
    """A ConfigError listing how the run's settings differ from those saved in the
    checkpoint it resumes, unless ``resume_changes=accept``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        reason = first_line(exc)
        raise ConfigError("resume", f"{path} is not a readable checkpoint ({reason})") from None
    saved = {**(ckpt.get("hyper_parameters") or {})}
    saved["data"] = (ckpt.get(ContentDataModule.__qualname__) or {}).get("settings")
    if saved["data"] is None:  # written before the data settings were saved: not compared
        now = {**now, "data": None}
    differences = [
        f"{key} {old!r} -> {new!r}"
        for key, old, new in _differences(saved, now)
        if not key.startswith(("style.url", "style.sha256", "data.root", "data.num_workers"))
    ]
    if differences and not accept_changes:
        raise ConfigError(
            "resume",
            f"{path} was trained with other settings ({'; '.join(differences[:6])}"
            f"{'; ...' if len(differences) > 6 else ''}): set them back to continue that run, "
            "or add resume_changes=accept to go on with the new ones",
        )


def _differences(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for k in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))
        return found
    return [] if old == new else [(key, old, new)]


@contextmanager
def owning(run: Run) -> Iterator[None]:
    """Hold the run's lock (``<folder>/.lock``) while the block runs: a second run writing the
    same checkpoint folder is refused in one line instead of overwriting the first one's files.
    A lock left by a run that died (its process is gone) is taken over."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        yield  # DDP ranks other than the first run inside the first one's lock
        return
    folder, lock = run.folder, run.lock
    me = f"{os.getpid()}@{socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock.read_text(errors="replace").strip() if lock.exists() else ""
            pid, _, host = owner.partition("@")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # its run is gone
                continue
            raise ConfigError(
                "checkpoint_dir",
                f"{folder} is in use by another run (process {printable(owner, 60)}; "
                f"delete {lock} if that run is gone)",
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        with suppress(OSError):  # a run that failed before its first file leaves no folder
            if not any(folder.iterdir()):
                folder.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def train(cfg: DictConfig, out_dir: Path) -> Path:
    """Run one training job; return the path of the trained model."""
    cfg = expand_paths(cfg)
    run = resolve(cfg, out_dir)
    module, datamodule, trainer = build(cfg, out_dir, run)
    require(
        cfg.get("resume_changes", "refuse") in ("refuse", "accept"),
        "resume_changes",
        f"must be refuse or accept, got {cfg.get('resume_changes')!r}",
    )
    if run.resume is not None:
        now = settings_of_run(module, datamodule)
        check_resume_matches(run.resume, now, cfg.get("resume_changes") == "accept")
        print(f"Resuming from {run.resume}")
    with owning(run):
        return _fit(run, module, datamodule, trainer)


def _fit(run: Run, module, datamodule, trainer) -> Path:
    stop = next(c for c in trainer.callbacks if isinstance(c, CleanStop))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.resume)
    except NonFiniteLossError as exc:
        where = (
            f"; the last good checkpoint is {run.last} (resume=last)" if run.last.is_file() else ""
        )
        raise NonFiniteLossError(f"{exc}{where}") from None
    except OSError as exc:  # a checkpoint that could not be written: a full disk, a quota
        if run.last.is_file():
            where = (
                f"; the last complete checkpoint is {run.last} (resume=last, once there is room)"
            )
        elif steps := sorted(run.folder.glob("step*.ckpt")):
            where = f"; the last complete checkpoint is {steps[-1]} (resume={steps[-1]})"
        else:
            where = ""
        raise CheckpointError(
            f"could not write a checkpoint in {run.folder} ({exc.strerror or first_line(exc)})"
            f"{where}"
        ) from None
    except SystemExit:
        # Lightning ends fit with SystemExit on a second Ctrl-C (the step in progress is lost)
        # and on a SIGTERM before the first step.
        sigterm = trainer.received_sigterm or stop.signal == signal.SIGTERM
        kept = (
            f"; resume=last goes on from {run.last}"
            if run.last.is_file()
            else "; nothing was saved"
        )
        raise Stopped(
            f"stopped at once at step {trainer.global_step} ({'SIGTERM' if sigterm else 'Ctrl-C'})"
            f"{kept}",
            143 if sigterm else 130,
        ) from None
    final = run.interrupted if stop.signal is not None else run.model
    save_final(trainer, final)
    if not trainer.is_global_zero:
        return final
    skipped = datamodule.num_skipped
    if skipped:
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_scalar"):
            experiment.add_scalar("data/skipped_files", skipped, trainer.global_step)
            experiment.flush()
        files = datamodule.skipped_files()
        shown = ", ".join(str(p) for p in files[:5]) + (", ..." if len(files) > 5 else "")
        print(f"Skipped {skipped} unreadable image file(s): {shown}")
    state = "Stopped at" if stop.signal is not None else "Trained"
    print(f"{state} step {trainer.global_step}. Model: {final}")
    print(f"TensorBoard logs: {run.out_dir / 'tensorboard'}  ({commands.tensorboard(run.out_dir)})")
    if module.multi:
        first = module.style_names[0]
        stylize = commands.stylize(
            final.resolve(), "photo.jpg", "--style", first, "-o", f"photo_{first}.jpg"
        )
        print(f"Stylize a photo: {stylize}  (--style all: every style; --list-styles)")
    else:
        stylize = commands.stylize(final.resolve(), "photo.jpg", "-o", f"photo_{run.name}.jpg")
        print(f"Stylize a photo: {stylize}")
    if stop.signal is not None:
        said = "Ctrl-C" if stop.signal == signal.SIGINT else "SIGTERM"
        raise Stopped(
            f"stopped at step {trainer.global_step} ({said}); go on with the same command and "
            f"resume=last (from {run.last})",
            130 if stop.signal == signal.SIGINT else 143,
        )
    return final


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(train, cfg)


if __name__ == "__main__":
    main()
