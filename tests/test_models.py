from pathlib import Path

import pytest
import torch

from pipeline.backbones import BACKBONES, DropPath, auto_stem
from pipeline.checkpoint import load_classifier
from pipeline.config.base import ConfigError
from pipeline.config.common import ModelConfig
from pipeline.models import Architecture, build_classifier, build_encoder, initial_encoder, load_weights

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
FEATURES = {"small_resnet": 32, "wrn_28_2": 128, "resnet18": 512, "resnet34": 512, "resnet50": 2048}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("stem,size,stride", [("cifar", 12, {"resnet": 8}), ("imagenet", 64, {"resnet": 32})])
def test_every_backbone_gives_its_features_and_feature_map_for_grey_and_colour(backbone, stem, size, stride):
    stride = stride["resnet"] if backbone.startswith("resnet") else stride["resnet"] // 2
    for channels in (1, 3):
        arch = Architecture(channels, 8, 1, num_classes=5, backbone=backbone, stem=stem)
        model = build_classifier(arch).eval()
        assert model(torch.rand(2, channels, size, size)).shape == (2, 5)
        encoder = build_encoder(arch)
        assert (encoder.feature_dim, encoder.stride) == (FEATURES[backbone], stride)
        side = -(-size // stride)
        assert encoder.feature_map(torch.rand(2, channels, size, size)).shape == (
            2,
            FEATURES[backbone],
            side,
            side,
        )


@pytest.mark.parametrize("backbone", BACKBONES)
def test_noise_is_active_in_train_mode_only(backbone):
    torch.manual_seed(0)
    arch = Architecture(1, 8, 2, num_classes=3, dropout=0.0, stochastic_depth=0.5, backbone=backbone)
    model = build_classifier(arch)
    drops = [m.p for m in model.modules() if isinstance(m, DropPath)]
    assert drops and max(drops) == 0.5 and min(drops) > 0  # linear decay: every block, the last at p
    x = torch.rand(16, 1, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_drop_path_draws_what_torchvision_stochastic_depth_draws():
    from torchvision.ops import StochasticDepth

    x = torch.randn(64, 4, 3, 3)
    ours, theirs = DropPath(0.3).train(), StochasticDepth(0.3, mode="row").train()
    torch.manual_seed(5)
    a = ours(x)
    torch.manual_seed(5)
    assert torch.equal(a, theirs(x))
    kept = (a.flatten(1) != 0).any(dim=1)
    assert 0.5 < kept.float().mean() < 0.9  # about 70 % of the samples keep their branch
    assert torch.allclose(a[kept], x[kept] / 0.7)
    assert torch.equal(ours.eval()(x), x)


def test_wrn_28_2_has_the_published_size():
    encoder = build_encoder(Architecture(3, 8, 1, backbone="wrn_28_2"))
    params = sum(p.numel() for p in encoder.parameters())
    assert 1.46e6 < params < 1.48e6  # FixMatch's WRN-28-2: 1.47 M without its 10-class head


def test_a_checkpoint_written_before_backbones_loads_and_predicts_the_same():
    model, ckpt = load_classifier(FIXTURES / "classifier_4ecca5e.pt")
    assert "backbone" not in ckpt["arch"] and model.arch.backbone == "small_resnet"
    expected = torch.load(FIXTURES / "classifier_4ecca5e_expected.pt")
    with torch.no_grad():
        assert torch.allclose(model.eval()(expected["input"]), expected["logits"], atol=1e-6)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision resnet18 with trained-looking BatchNorm statistics, saved as teams save weights."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).train()
    with torch.no_grad():
        net(torch.randn(8, 3, 64, 64))
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    return path, net.eval()


@pytest.mark.parametrize(
    "size,stem", [(8, "cifar"), (28, "cifar"), (32, "cifar"), (33, "imagenet"), (48, "imagenet")]
)
def test_auto_stem_keeps_full_resolution_up_to_32_px_and_downsamples_above(size, stem):
    assert auto_stem("auto", size) == stem
    assert auto_stem("cifar", 224) == "cifar" and auto_stem("imagenet", 8) == "imagenet"  # named: kept


def torchvision_features(net, x):
    trunk = torch.nn.Sequential(*list(net.children())[:-1])  # everything but fc: the pooled features
    return trunk(x).flatten(1)


def test_torchvision_weights_give_torchvision_features_in_colour_and_grey(resnet18_file):
    path, net = resnet18_file
    model = ModelConfig(backbone="resnet18", stem="auto", weights=str(path), width=8, depth=1)
    x = torch.rand(3, 3, 64, 64)
    colour, arch = initial_encoder(model, 3, 32, {"mean": [0.0] * 3, "std": [1.0] * 3})
    assert arch.stem == "imagenet"  # auto: the stem the weights were trained with, whatever the image size
    grey, _ = initial_encoder(model, 1, 32, {"mean": [0.0], "std": [1.0]})
    with torch.no_grad():
        assert torch.allclose(colour.eval()(x), torchvision_features(net, x), atol=1e-4)
        g = x[:, :1]  # the RGB kernels summed: a grey image gives what its 3-channel copy gives
        assert torch.allclose(grey.eval()(g), torchvision_features(net, g.repeat(1, 3, 1, 1)), atol=1e-4)
    arch = Architecture(3, 8, 1, backbone="resnet18", stem="imagenet")
    assert load_weights(build_encoder(arch), arch, path) == ["fc.weight", "fc.bias"]  # ignored: the head


def test_weights_that_do_not_fit_get_an_error_naming_model_weights_and_the_mismatch(resnet18_file, tmp_path):
    import torchvision

    path, _ = resnet18_file
    resnet34 = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), resnet34)
    arch = Architecture(3, 8, 1, backbone="resnet18", stem="imagenet")
    with pytest.raises(
        ConfigError,
        match=r"model.weights .*resnet34.pth.* the file holds a resnet34, model.backbone is resnet18",
    ):
        load_weights(build_encoder(arch), arch, resnet34)
    cifar = Architecture(3, 8, 1, backbone="resnet18", stem="cifar")
    with pytest.raises(ConfigError, match=r"model.weights .*shape mismatches.*stem.0.weight.*set model.stem"):
        load_weights(build_encoder(cifar), cifar, path)
    garbage = tmp_path / "notes.pth"
    garbage.write_text("not weights")
    with pytest.raises(ConfigError, match="model.weights .*notes.pth: not a PyTorch state dict"):
        load_weights(build_encoder(arch), arch, garbage)
    small = Architecture(3, 8, 1)
    with pytest.raises(ConfigError, match="model.weights .*not model.backbone small_resnet"):
        load_weights(build_encoder(small), small, path)


def test_params_refuse_weights_for_a_backbone_they_cannot_fit_and_outside_the_watched_folder(tmp_path):
    with pytest.raises(
        ValueError, match="model.weights: torchvision weights fit the resnet backbones, not wrn_28_2"
    ):
        ModelConfig(backbone="wrn_28_2", stem="auto", weights="weights/w.pth", width=8, depth=1)
