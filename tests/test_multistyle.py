"""Several styles in one network: conditional instance norm, training, adding a style,
stylizing with a style or a blend, exports."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fastnst import checkpoint as ckpt_format
from fastnst import tiling
from fastnst.errors import ConfigError
from fastnst.export import main as export_main
from fastnst.images import load_image, load_image_with_alpha, save_image
from fastnst.inference import Stylizer, parse_styles
from fastnst.losses import PerceptualLoss
from fastnst.module import StyleTransferModule
from fastnst.stylize import main as stylize_main
from fastnst.transformer import TransformerNet

from .conftest import CONTENT, STYLES, TINY_RUN, TINY_STYLES, compose_config, run_console

PHOTO = CONTENT / "chicago.jpg"


def seeded_multi_net(num_styles: int = 3) -> TransformerNet:
    """A small network of several styles with random weights and clearly different rows."""
    torch.manual_seed(0)
    net = TransformerNet(8, 2, num_styles=num_styles).eval()
    with torch.no_grad():
        for param in net.style_parameters():
            param.add_(0.5 * torch.randn_like(param))
    return net


def single_from_rows(net: TransformerNet, weights: list[float]) -> TransformerNet:
    """A one-style network with ``net``'s convolutions and, in every norm, the rows of
    ``net`` mixed by ``weights`` (written out independently of the code under test)."""
    single = TransformerNet(net.base_channels, net.num_residual_blocks).eval()
    mix = torch.tensor(weights)
    state = {}
    for key, value in net.state_dict().items():
        state[key] = (mix[:, None] * value).sum(0) if value.dim() == 2 else value
    single.load_state_dict(state)
    return single


# --- the network ----------------------------------------------------------------------------


def test_one_style_of_a_multi_network_is_that_styles_single_network():
    net = seeded_multi_net()
    x = torch.rand(2, 3, 45, 38)
    with torch.no_grad():
        for index in range(3):
            onehot = torch.zeros(3)
            onehot[index] = 1
            expected = single_from_rows(net, onehot.tolist())(x)
            assert torch.allclose(net(x, onehot), expected, atol=1e-5)
        # ...and the styles differ from each other.
        first, second = net(x, torch.tensor([1.0, 0, 0])), net(x, torch.tensor([0, 1.0, 0]))
        assert (first - second).abs().max() > 0.05


def test_a_blend_mixes_the_norm_rows_and_weights_are_divided_by_their_sum():
    net = seeded_multi_net()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        expected = single_from_rows(net, [0.7, 0.3, 0.0])(x)
        assert torch.allclose(net(x, torch.tensor([0.7, 0.3, 0.0])), expected, atol=1e-5)
        assert torch.allclose(net(x, torch.tensor([7.0, 3.0, 0.0])), expected, atol=1e-5)


def test_each_image_of_a_batch_takes_its_own_mix():
    net = seeded_multi_net()
    x = torch.rand(2, 3, 32, 36)
    mixes = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.0, 0.8]])
    with torch.no_grad():
        together = net(x, mixes)
        for i in range(2):
            assert torch.allclose(together[i], net(x[i : i + 1], mixes[i])[0], atol=1e-6)


def test_a_multi_network_without_a_mix_is_refused_and_one_style_networks_are_unchanged():
    with pytest.raises(RuntimeError, match="style mix"):
        seeded_multi_net()(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="must have 3 weights"):
        seeded_multi_net()(torch.rand(1, 3, 16, 16), torch.ones(2))
    single = TransformerNet(8, 1)
    norm = single.encoder[0][2]
    assert norm.weight.shape == (1, 8) and "num_styles" not in single.settings()
    # ...and its checkpoint keeps nn.InstanceNorm2d's 1-D scale and shift.
    assert all(v.dim() == 1 for k, v in single.state_dict().items() if k.endswith(".2.weight"))
    reference = torch.nn.InstanceNorm2d(8, affine=True)
    assert set(norm.state_dict()) == set(reference.state_dict())


def test_tiling_stays_exact_for_a_blend():
    net = seeded_multi_net()
    image = torch.rand(1, 3, 150, 210)
    mix = torch.tensor([0.5, 0.0, 0.5])
    with torch.no_grad():
        whole = net(image, mix)
    with net.styled(mix):
        tiled = tiling.stylize_exact(net, image, 64, torch.device("cpu"))
    assert (tiled - whole).abs().max() < 1e-4
    # The Stylizer chooses the tiles itself under a small memory budget: the same result.
    stylizer = Stylizer(net, tile=64, style=mix)
    assert stylizer.plan(150, 210).mode == "exact"
    assert (stylizer(image) - whole).abs().max() < 1e-4


def test_added_styles_start_as_the_mean_and_leave_the_others_alone():
    net = seeded_multi_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.add_styles(2)
    assert net.num_styles == 5 and net.settings()["num_styles"] == 5
    for key, value in net.state_dict().items():
        if before[key].dim() == 2:
            assert torch.equal(value[:3], before[key])
            assert torch.allclose(value[3], before[key].mean(0))
        else:
            assert torch.equal(value, before[key])


# --- the loss -------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_per_image_style_targets_equal_one_loss_per_painting():
    paintings = [load_image(STYLES / f"{n}.jpg", 64) for n in ("wave", "mosaic")]
    settings = {"vgg_weights": "random", "network": "vgg16", "tv_weight": 1e-3}
    both = PerceptualLoss(**settings)
    both.set_styles(paintings, [2.0, 5.0])
    torch.manual_seed(1)
    output, photos = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    terms = both.terms(output, both.content_targets(photos), style_ids=torch.tensor([1, 0]))
    for row, (painting, weight) in enumerate(zip(paintings[::-1], (5.0, 2.0), strict=True)):
        one = PerceptualLoss(style_image=painting, style_weight=weight, **settings)
        alone = one(output[row : row + 1], photos[row : row + 1])
        for name in ("style", "content", "tv", "total"):
            assert torch.allclose(terms[name][row], alone[name], rtol=1e-4), name


# --- training -------------------------------------------------------------------------------


def test_every_style_is_trained_at_every_step_and_equally_often():
    module = SimpleNamespace(trained_styles=["a", "b", "c"])
    counts = [0, 0, 0]
    for step in range(6):
        ids = StyleTransferModule._style_ids(module, 4, step)
        assert set(ids) == {0, 1, 2}  # a batch of 4 holds all three
        for i in ids:
            counts[i] += 1
    assert counts == [8, 8, 8]


@pytest.mark.shared_data
def test_training_several_styles_logs_each_and_writes_their_names(tiny_multi_run):
    path, run = tiny_multi_run
    net, meta = ckpt_format.load_with_metadata(path)
    assert meta["styles"] == list(TINY_STYLES) and net.num_styles == 3
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    for name in TINY_STYLES:
        assert {f"train/{name}/style", f"val/{name}/style", f"val/{name}/content"} <= scalars
    assert {"val/style", "val/content"} <= scalars
    (grid,) = events.Tags()["images"]
    image = events.Images(grid)[-1]
    # A row of photos, then one row per style: 4 rows of 3 images of 32 px (+ padding).
    assert image.height == 4 * 32 + 5 * 2 and image.width == 3 * 32 + 4 * 2


@pytest.mark.shared_data
def test_adding_a_style_trains_only_its_own_rows(tiny_multi_run, tmp_path):
    from fastnst.train import train

    base, _ = tiny_multi_run
    cfg = compose_config(
        [
            *TINY_RUN,
            f"add_to={base}",
            f"styles=[{STYLES / 'la_muse.jpg'}]",
            "style.size=64",
            f"checkpoint_dir={tmp_path}",
        ]
    )
    added = train(cfg, tmp_path / "run")
    assert added.name == f"{base.stem}+la_muse.ckpt"
    old, old_meta = ckpt_format.load_with_metadata(base)
    new, meta = ckpt_format.load_with_metadata(added)
    assert meta["styles"] == [*TINY_STYLES, "la_muse"]
    moved = 0.0
    for key, value in new.state_dict().items():
        was = old.state_dict()[key]
        if value.dim() == 2:
            assert torch.equal(value[:3], was), key
            moved = max(moved, float((value[3] - was.mean(0)).abs().max()))
        else:
            assert torch.equal(value, was), key
    assert moved > 0  # the new style's rows did train


@pytest.mark.shared_data
def test_bad_style_lists_are_one_line(tiny_multi_run, tmp_path):
    from fastnst.train import train

    base, _ = tiny_multi_run
    cases = {
        "styles=[no_such_style]": "neither a preset",
        f"styles=[{STYLES / 'wave.jpg'},{STYLES / 'wave.jpg'}]": "twice",
        f"add_to={base}": "already holds",  # the style group's starry_night is in it
        f"add_to={tmp_path / 'missing.ckpt'}": "does not exist",
    }
    for override, message in cases.items():
        cfg = compose_config([*TINY_RUN, override, f"checkpoint_dir={tmp_path}"])
        with pytest.raises(ConfigError, match=message):
            train(cfg, tmp_path / "run")


# --- stylizing ------------------------------------------------------------------------------


def _stylize(*args):
    return run_console(stylize_main, [*map(str, args), "--device", "cpu"])


def expected_output(ckpt, mix, tmp_path, size=64):
    """The network run directly, saved as the command saves it."""
    net, _ = ckpt_format.load_with_metadata(ckpt)
    photo = load_image_with_alpha(PHOTO, size)[0][None]  # as fastnst-stylize reads it
    with torch.no_grad():
        out = net(photo, mix)
    path = tmp_path / "expected.png"
    save_image(out[0], path)
    return load_image(path)


@pytest.mark.shared_data
def test_style_by_name_and_blend_are_the_network_with_that_mix(multi_checkpoint, tmp_path):
    result = _stylize(
        multi_checkpoint, PHOTO, "--style", "wave", "--size", 64, "-o", tmp_path, "--ext", "png"
    )
    assert result.returncode == 0, result.stderr
    wave = load_image(tmp_path / "chicago_wave.png")
    assert torch.equal(wave, expected_output(multi_checkpoint, torch.tensor([0, 1.0, 0]), tmp_path))
    result = _stylize(
        multi_checkpoint, PHOTO, "--style", "starry_night=0.7,wave=0.3", "--size", 64,
        "-o", tmp_path / "blend.png",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = expected_output(multi_checkpoint, torch.tensor([0.7, 0.3, 0.0]), tmp_path)
    assert torch.equal(load_image(tmp_path / "blend.png"), expected)
    # The blend is neither of its styles.
    alone = expected_output(multi_checkpoint, torch.tensor([1.0, 0.0, 0.0]), tmp_path)
    assert (alone - expected).abs().max() > 0.02


@pytest.mark.shared_data
def test_all_styles_write_one_output_each_named_by_style(multi_checkpoint, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    for name in ("chicago.jpg", "sailboat.jpg"):
        Image.open(CONTENT / name).resize((48, 32)).save(photos / f"{name[:-4]}.png")
    result = _stylize(multi_checkpoint, photos, "--style", "all", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{p}_{s}.png" for p in ("chicago", "sailboat") for s in TINY_STYLES)
    pictures = [load_image(tmp_path / "out" / f"chicago_{s}.png") for s in TINY_STYLES]
    assert all((a - b).abs().max() > 0.02 for a, b in zip(pictures, pictures[1:], strict=False))
    # One file for several styles: refused, nothing written.
    result = _stylize(multi_checkpoint, PHOTO, "--style", "all", "-o", tmp_path / "one.png")
    assert result.returncode == 2 and "give a folder" in result.stderr
    assert not (tmp_path / "one.png").exists()


@pytest.mark.shared_data
def test_list_styles_and_bad_style_choices_are_one_line(multi_checkpoint, tmp_path):
    result = _stylize(multi_checkpoint, "--list-styles")
    assert result.returncode == 0 and result.stdout.split() == list(TINY_STYLES)
    cases = {
        (): "holds 3 styles (starry_night, wave, mosaic)",
        ("--style", "candy"): "no style 'candy' in this network; it has: starry_night, wave",
        ("--style", "wave=-0.5,mosaic=1"): "weights must be 0 or more",
        ("--style", "wave=0,mosaic=0"): "add up to 0",
        ("--style", "wave=lots"): "is not NAME=WEIGHT",
    }
    for options, message in cases.items():
        result = _stylize(multi_checkpoint, PHOTO, *options, "-o", tmp_path / "x.png")
        assert result.returncode == 2, options
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert not (tmp_path / "x.png").exists()


@pytest.mark.shared_data
def test_a_single_style_checkpoint_works_as_before_and_names_its_one_style(
    tiny_checkpoint, tmp_path
):
    assert _stylize(tiny_checkpoint, "--list-styles").stdout.split() == ["starry_night"]
    plain = _stylize(tiny_checkpoint, PHOTO, "--size", 48, "-o", tmp_path / "plain.png")
    named = _stylize(
        tiny_checkpoint, PHOTO, "--size", 48, "--style", "starry_night", "-o", tmp_path / "n.png"
    )
    assert plain.returncode == named.returncode == 0
    assert torch.equal(load_image(tmp_path / "plain.png"), load_image(tmp_path / "n.png"))
    wrong = _stylize(tiny_checkpoint, PHOTO, "--style", "wave", "-o", tmp_path / "w.png")
    assert wrong.returncode == 2 and "it has: starry_night" in wrong.stderr


@pytest.mark.shared_data
def test_strength_and_preserve_color_apply_to_a_style(multi_checkpoint, tmp_path):
    common = [multi_checkpoint, PHOTO, "--style", "mosaic", "--size", 64]
    assert _stylize(*common, "-o", tmp_path / "full.png").returncode == 0
    assert _stylize(*common, "--strength", "0.5", "-o", tmp_path / "half.png").returncode == 0
    photo, full = load_image(PHOTO, 64), load_image(tmp_path / "full.png")
    half = load_image(tmp_path / "half.png")
    assert (half - (photo + full) / 2).abs().max() <= 1.5 / 255
    assert _stylize(*common, "--preserve-color", "-o", tmp_path / "keep.png").returncode == 0
    keep = load_image(tmp_path / "keep.png")

    # Luma from the stylized picture, chroma from the photo: Cb of the photo comes back.
    def cb(x):
        return -0.168736 * x[0] - 0.331264 * x[1] + 0.5 * x[2]

    def off(x):
        return float((cb(x) - cb(photo)).abs().mean())

    assert off(keep) < 0.01 < off(full)


@pytest.mark.shared_data
def test_a_video_per_style(multi_checkpoint, tmp_path):
    pytest.importorskip("av")
    from .test_video import describe, make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=4, audio=False)
    result = _stylize(multi_checkpoint, clip, "--style", "wave,mosaic", "-o", tmp_path / "x")
    assert result.returncode == 2 and "NAME=WEIGHT" in result.stderr
    result = _stylize(multi_checkpoint, clip, "--style", "all", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for name in TINY_STYLES:
        assert describe(tmp_path / "out" / f"clip_{name}.mp4")["frames"] == 4


def test_parse_styles_labels():
    names = ["starry_night", "wave"]
    (blend,) = parse_styles("starry_night=3, wave=1", names)
    assert blend.label == "starry_night75+wave25" and blend.mix.tolist() == [0.75, 0.25]
    (one,) = parse_styles("wave=2,starry_night=0", names)
    assert one.label == "wave" and one.mix.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="twice"):
        parse_styles("wave=1,wave=2", names)


# --- exports --------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exports_take_the_style_mix_as_an_input(multi_checkpoint, tmp_path, fmt):
    out = tmp_path / f"three.{'onnx' if fmt == 'onnx' else 'pt'}"
    result = run_console(export_main, [multi_checkpoint, "--format", fmt, "-o", out])
    assert result.returncode == 0, result.stderr
    assert "for style mixes [1.0, 0.0, 0.0] and [0.7, 0.3, 0.0]" in result.stdout
    net, _ = ckpt_format.load_with_metadata(multi_checkpoint)
    x = torch.rand(1, 3, 53, 77)
    mixes = [torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.2, 0.5, 0.3])]
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out))
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["fastnst.styles"]) == list(TINY_STYLES)
        got = [
            torch.from_numpy(session.run(None, {"image": x.numpy(), "style": m.numpy()})[0])
            for m in mixes
        ]
    else:
        files = {"fastnst.json": ""}
        scripted = torch.jit.load(str(out), _extra_files=files)
        assert json.loads(files["fastnst.json"])["styles"] == list(TINY_STYLES)
        got = [scripted(x, m) for m in mixes]
    with torch.no_grad():
        for mix, exported in zip(mixes, got, strict=True):
            assert (exported - net(x, mix)).abs().max() < 1e-4
    assert (got[0] - got[1]).abs().max() > 0.02


@pytest.mark.shared_data
def test_a_multi_style_run_resumes(tmp_path):
    from fastnst.train import train

    styles = ",".join(str(STYLES / f"{name}.jpg") for name in ("wave", "mosaic"))
    common = [*TINY_RUN, f"styles=[{styles}]", "style.size=64", f"checkpoint_dir={tmp_path}"]
    first = train(compose_config([*common, "checkpoint_every=1"]), tmp_path / "a")
    assert (tmp_path / "wave+mosaic" / "last.ckpt").is_file()
    resumed = train(compose_config([*common, "trainer.max_steps=3", "resume=last"]), tmp_path / "b")
    assert resumed == first  # the same model file, now after 3 steps
    net, meta = ckpt_format.load_with_metadata(resumed)
    assert meta["styles"] == ["wave", "mosaic"]
    step = torch.load(resumed, map_location="cpu", weights_only=True)["global_step"]
    assert step == 3


@pytest.mark.shared_data
def test_a_checkpoint_whose_names_do_not_match_its_styles_is_refused(multi_checkpoint, tmp_path):
    ckpt = torch.load(multi_checkpoint, map_location="cpu", weights_only=True)
    for styles, message in (
        (["starry_night", "wave"], r"names 2 style\(s\) for a network of 3"),
        (["a", "a", "b"], "not a list of distinct short names"),
    ):
        ckpt["fastnst"]["styles"] = styles
        torch.save(ckpt, tmp_path / "bad.ckpt")
        with pytest.raises(ckpt_format.CheckpointError, match=message):
            ckpt_format.load_with_metadata(tmp_path / "bad.ckpt")
