import torch

from pipeline.models import Architecture, build_classifier, build_encoder


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
