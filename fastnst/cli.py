"""What the Hydra entry points (``fastnst.train``, ``fastnst.optimize``) share: where the
configs are, and how a job's errors reach the user.

Imports neither Hydra nor Lightning at module level.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastnst.errors import ConfigError, FastnstError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def run_job(job: Callable[[Any, Path], object], cfg: Any) -> None:
    """Run a Hydra job in its output folder.

    A :class:`FastnstError` (a problem the user can fix) becomes one ``error:`` line on
    stderr and exit status 2 for a bad setting, 1 otherwise; ``HYDRA_FULL_ERROR=1`` shows its
    traceback. Any other exception is a bug and propagates with its traceback.
    """
    from hydra.core.hydra_config import HydraConfig

    try:
        job(cfg, Path(HydraConfig.get().runtime.output_dir))
    except FastnstError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
