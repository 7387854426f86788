"""What a training run shows while it runs: one progress bar toward ``max_steps`` with its ETA
and images/s, a projection of the total time once the first steps are timed, and a
TensorBoard run that opens on the loss curves; and how it stops when asked to."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

# Steps timed before the projection is printed (the first step, with its warm-up, excluded).
PROJECT_AFTER = 10


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole run: the global step of ``max_steps`` (not batches of an
    epoch), tqdm's elapsed time and ETA, and the images per second since the bar began."""

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self._start: tuple[float, int] | None = None
        self._images = 0
        self._rate: float | None = None  # images per second since the first step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        bar = self.train_progress_bar
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        bar.reset(total=total)
        bar.initial = bar.n = trainer.global_step  # a resumed run starts where it stopped
        bar.unit = "step"
        bar.set_description("Training")
        self._start, self._images, self._rate = None, 0, None

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        pass  # the bar counts the whole run, not the epoch

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now, step = time.perf_counter(), trainer.global_step
        if self._start is None:
            self._start = (now, step)  # from the end of the first step: warm-up excluded
        else:
            self._images += len(batch) * trainer.world_size
        bar = self.train_progress_bar
        if bar is None or not self._should_update(step, bar.total or step):
            return
        seconds = now - self._start[0]
        if self._images and seconds > 0:
            self._rate = self._images / seconds
        bar.n = step
        bar.set_postfix(self.get_metrics(trainer, pl_module))
        bar.refresh()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass  # nothing to close or reset between epochs

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the TensorBoard version, meaningless here
        if self._rate is not None:
            metrics["img/s"] = f"{self._rate:.2f}"
        return metrics


class ProjectedTime(Callback):
    """Prints, once, how long the whole run will take, from its first timed steps."""

    def __init__(self, after: int = PROJECT_AFTER) -> None:
        self.after = after
        self._start: tuple[float, int] | None = None
        self.message: str | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if self.message is not None or trainer.max_steps is None or trainer.max_steps <= 0:
            return
        now, step = time.perf_counter(), trainer.global_step
        if self._start is None:
            self._start = (now, step)
            return
        timed = step - self._start[1]
        if timed < self.after or step >= trainer.max_steps:
            return
        per_step = (now - self._start[0]) / timed
        left = per_step * (trainer.max_steps - step)
        ends = datetime.now() + timedelta(seconds=left)
        self.message = (
            f"{per_step:.2f} s/step over steps {self._start[1] + 1}-{step}: about "
            f"{_duration(left)} for the remaining {trainer.max_steps - step} of "
            f"{trainer.max_steps} steps (ends around {ends:%H:%M}, validation not counted)"
        )
        if trainer.is_global_zero:
            bar = trainer.progress_bar_callback
            if isinstance(bar, TQDMProgressBar) and bar.is_enabled:
                bar.print(self.message)
            else:
                print(self.message, flush=True)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings -> {"loss/network": "vgg16", ...} with TensorBoard-friendly values."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RunLogger(TensorBoardLogger):
    """TensorBoard for a training run, opening on what matters.

    - Hyper-parameters are logged with real metrics (the held-out ``val/style``,
      ``val/content`` and ``val/total``) instead of Lightning's placeholder ``hp_metric``.
    - Lightning's ``epoch`` scalar is left out.
    - :meth:`layout` adds a custom-scalars layout with train and val of each loss term on one
      chart (TensorBoard's CUSTOM SCALARS tab).
    """

    HP_METRICS = ("val/style", "val/content", "val/total")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, default_hp_metric=False, **kwargs)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        from torch.utils.tensorboard.summary import hparams

        super().log_hyperparams(params)  # hparams.yaml (no summary: there is no hp_metric)
        flat = _flatten(dict(params) if isinstance(params, Mapping) else vars(params))
        # The metrics are named only: their values are the val/ scalars the run logs itself.
        writer = self.experiment._get_file_writer()  # as Lightning's own log_hyperparams does
        for summary in hparams(flat, {name: 0.0 for name in self.HP_METRICS}):
            writer.add_summary(summary)

    @rank_zero_only
    def layout(self, terms: list[str], styles: list[str] | None = None) -> None:
        """Charts of train and val of each term; with several styles also each term's
        held-out value per style on one chart."""
        charts = {term: ["Multiline", [f"train/{term}", f"val/{term}"]] for term in terms}
        layout = {"losses (train and held-out)": charts}
        if styles:
            layout["held-out losses per style"] = {
                term: ["Multiline", [f"val/{name}/{term}" for name in styles]]
                for term in [*terms, "style_input"]
            }
        self.experiment.add_custom_scalars(layout)


class CleanStop(Callback):
    """Ctrl-C or SIGTERM ends a run at the end of the step in progress, not inside it: the
    run's resumable state is written to ``last.ckpt`` and training stops, so
    ``resume=last`` goes on from exactly there. A second Ctrl-C stops at once (the step in
    progress is lost; every checkpoint is written beside its place and renamed, so none is
    left half-written).

    ``signal`` holds the signal that stopped the run (None otherwise)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning installed its own SIGTERM handler (which would end the run without
        # saving it); restored at the end of training.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._asked_to_stop)

    def _asked_to_stop(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt
        self.signal = signum
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        print(
            f"\n{name}: stopping after this step and saving it (Ctrl-C again: stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        stop = self.signal is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self.signal = self.signal or signal.SIGTERM
        # Collective under DDP (rank 0 writes); the trainer's checkpoint writer
        # (fastnst.train.AtomicCheckpointIO) writes it beside its place and renames it.
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        trainer.save_checkpoint(last, weights_only=False)
        trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
