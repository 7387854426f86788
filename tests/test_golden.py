"""Outputs of a fixed version-1 checkpoint stay bit-identical (tests/golden/, made by
scripts/make_golden.py before the code they guard was last restructured).

Whole-image, exact-tiled, thumbnail-tiled and colour/strength outputs are compared pixel for
pixel; a refactoring may not change a single 8-bit value, and the old checkpoint layout must
keep loading.
"""

from __future__ import annotations

import make_golden  # scripts/, on sys.path through conftest
import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import REPO

GOLDEN = REPO / "tests" / "golden"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    checkpoint = tmp / "golden.ckpt"
    make_golden.write_checkpoint(checkpoint)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the references were made
    try:
        return make_golden.stylize_cases(checkpoint, GOLDEN / "input.png", tmp)
    finally:
        torch.set_num_threads(threads)


def test_the_input_is_regenerated_exactly(tmp_path):
    make_golden.write_input(tmp_path / "input.png")
    assert np.array_equal(_pixels(tmp_path / "input.png"), _pixels(GOLDEN / "input.png"))


@pytest.mark.parametrize("case", list(make_golden.CASES))
def test_outputs_are_bit_identical_to_the_references(outputs, case):
    got, expected = _pixels(outputs[case]), _pixels(GOLDEN / f"{case}.png")
    assert got.shape == expected.shape
    differing = int((got != expected).any(axis=-1).sum())
    assert differing == 0, f"{case}: {differing} pixels differ from tests/golden/{case}.png"


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
