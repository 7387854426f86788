"""init=: a run that starts from a trained network (a checkpoint file or a shipped model)."""

from __future__ import annotations

import pytest
import torch

from fastnst import checkpoint as ckpt_format
from fastnst.errors import CheckpointError, ConfigError
from fastnst.shipped import shipped_models

from .conftest import STYLES, TINY_RUN, compose_config

pytestmark = pytest.mark.shared_data

# Adam's first steps move each weight by about lr: this small, training moves nothing visibly.
STILL = ["lr=1e-9"]


def _train(tmp_path, *overrides):
    from fastnst.train import train

    cfg = compose_config([*TINY_RUN, *overrides, f"checkpoint_dir={tmp_path}"])
    path = train(cfg, tmp_path / "run")
    return ckpt_format.load_with_metadata(path)


def _largest_change(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def test_a_run_starts_from_a_shipped_models_network(tmp_path):
    name = "mondrian"
    shipped, _ = ckpt_format.load_network(shipped_models()[name])
    net, meta = _train(tmp_path, f"init={name}", *STILL)  # TINY_RUN says model=small
    # Its architecture, not the model group's, and its weights: nothing moved at lr 1e-9.
    assert (net.base_channels, net.num_residual_blocks) == (32, 5)
    assert _largest_change(net, shipped) < 1e-6
    assert meta["style_name"] == "starry_night"  # the run's painting, not the init's
    settings = torch.load(tmp_path / "starry_night.ckpt", weights_only=True)["hyper_parameters"]
    assert settings["init"] == name and settings["model"] == shipped.settings()
    # Without init the same run starts from new weights: far from the shipped ones.
    scratch, _ = _train(tmp_path / "scratch", "model=johnson", *STILL)
    assert _largest_change(scratch, shipped) > 1e-2


def test_a_one_style_network_starts_every_style_of_a_multi_style_run(tmp_path):
    first, _ = _train(tmp_path / "one", "trainer.max_steps=2")
    styles = f"styles=[{STYLES / 'starry_night.jpg'},{STYLES / 'wave.jpg'}]"
    net, meta = _train(tmp_path, f"init={tmp_path / 'one' / 'starry_night.ckpt'}", styles, *STILL)
    assert net.num_styles == 2 and meta["styles"] == ["starry_night", "wave"]
    start = first.state_dict()
    for key, value in net.state_dict().items():
        rows = value if value.dim() == 2 else None
        if rows is None:
            assert torch.allclose(value, start[key], atol=1e-6), key
        else:
            for row in rows:  # each style starts with the one style's norm rows
                assert torch.allclose(row, start[key], atol=1e-6), key


def test_bad_init_is_one_line(tmp_path):
    from fastnst.train import train

    with pytest.raises(CheckpointError, match="no model of that name ships"):
        train(compose_config([*TINY_RUN, "init=no_such_model"]), tmp_path / "a")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a fastnst checkpoint"):
        train(compose_config([*TINY_RUN, f"init={junk}"]), tmp_path / "b")
    shipped = shipped_models()["wave"]
    with pytest.raises(ConfigError, match="add_to"):
        train(compose_config([*TINY_RUN, f"init={shipped}", f"add_to={shipped}"]), tmp_path / "c")
