"""What the experiment and report scripts share: where the project's shared data is, read once
(``$FASTNST_SHARED``, else ``../shared`` beside the repository; ``$FASTNST_SHARED_DATA`` for
its ``data/`` alone, as the tests take it), and the held-out photos every report scores.

Scripts run as ``python scripts/<name>.py``, so this folder is on their path: ``import common``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTNST_SHARED", REPO.parent / "shared")).expanduser()
SHARED_DATA = Path(os.environ.get("FASTNST_SHARED_DATA", SHARED / "data")).expanduser()
STYLES = SHARED_DATA / "styles"
CONTENT = SHARED_DATA / "content"
COCO_TRAIN = SHARED_DATA / "coco" / "train2017"
COCO_VAL = SHARED_DATA / "coco" / "val2017"
# Never trained on: the photos every report scores networks on.
HELD_OUT = [CONTENT, COCO_VAL]
VGG16_WEIGHTS = SHARED / "models" / "vgg16_features.pth"
