import torch

from pipeline.models import Architecture, DropPath, build_classifier, build_encoder


def test_shapes_for_grayscale_and_colour():
    for channels in (1, 3):
        model = build_classifier(Architecture(channels, width=8, depth=2, num_classes=5))
        assert model(torch.rand(4, channels, 28, 28)).shape == (4, 5)
        assert build_encoder(Architecture(channels, 8, 1))(torch.rand(2, channels, 32, 32)).shape == (2, 32)


def test_noise_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = build_classifier(Architecture(1, 8, 2, num_classes=3, dropout=0.5, stochastic_depth=0.5))
    x = torch.rand(16, 1, 28, 28)
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
