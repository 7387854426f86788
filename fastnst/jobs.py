"""What the Hydra entry points (``fastnst.train``, ``fastnst.optimize``) share: where the
configs are, and how a job's errors reach the user.

Imports neither Hydra nor Lightning at module level.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastnst.errors import ConfigError, FastnstError, Stopped


def _conf_dir() -> Path:
    """The Hydra configs: ``fastnst/conf`` in an installed wheel, else the repository's
    top-level ``conf/`` (a checkout, or an editable install of it)."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return installed if (installed / "config.yaml").is_file() else package.parent / "conf"


CONF_DIR = _conf_dir()


# Every setting that names a file or folder, as a dotted config key (train and optimize).
PATH_SETTINGS = (
    "checkpoint_dir",
    "resume",
    "add_to",
    "init",
    "data.root",
    "data.val_root",
    "data.cache_dir",
    "style.image",
    "loss.vgg_weights",
    "content",
    "output",
)


def expand_paths(cfg: Any) -> Any:
    """A copy of the composed config with ``~`` expanded in every path setting (and in the
    paintings of ``styles``), once, where the job reads its settings: every file of the run
    then lands where the user asked, whatever part of the code writes it."""
    from omegaconf import OmegaConf

    cfg = cfg.copy()
    for key in PATH_SETTINGS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, str) and value.startswith("~"):
            OmegaConf.update(cfg, key, os.path.expanduser(value))
    styles = cfg.get("styles") or []
    for i, entry in enumerate(styles):
        if isinstance(entry, str) and entry.startswith("~"):
            styles[i] = os.path.expanduser(entry)
        elif OmegaConf.is_dict(entry) and str(entry.get("image") or "").startswith("~"):
            entry.image = os.path.expanduser(entry.image)
    return cfg


def run_job(job: Callable[[Any, Path], object], cfg: Any) -> None:
    """Run a Hydra job in its output folder.

    A :class:`FastnstError` (a problem the user can fix) becomes one ``error:`` line on
    stderr and exit status 2 for a bad setting, 1 otherwise; ``HYDRA_FULL_ERROR=1`` shows its
    traceback. Ctrl-C and SIGTERM end the job with one line and 130 / 143 (training handles
    them itself once it runs: see :class:`fastnst.monitoring.CleanStop`). Any other exception
    is a bug and propagates with its traceback.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    out_dir = Path(hydra.runtime.output_dir)
    log_name = f"{hydra.job.name}.log"

    def terminated(signum: int, frame: Any) -> None:
        raise Stopped("stopped (SIGTERM)", 143)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if main_thread else None
    try:
        job(cfg, out_dir)
    except Stopped as exc:
        _remove_if_unused(out_dir, log_name)
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _remove_if_unused(out_dir, log_name)
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except FastnstError as exc:
        _remove_if_unused(out_dir, log_name)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _remove_if_unused(out_dir: Path, log_name: str) -> None:
    """Remove a run's output folder that holds nothing but what Hydra put there before the
    job began (its .hydra/ record and the job's log), and its dated parent if that is then
    empty: a run stopped by a bad setting leaves no litter."""
    hydra_files = {".hydra", log_name}
    try:
        if not out_dir.is_dir() or not {p.name for p in out_dir.iterdir()} <= hydra_files:
            return
        shutil.rmtree(out_dir)
        dated = out_dir.parent  # outputs/<date>/ in the default layout
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", dated.name) and not any(dated.iterdir()):
            dated.rmdir()
    except OSError:  # not ours to fail over
        pass
