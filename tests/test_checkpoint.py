import re

import pytest
import torch

from pipeline.checkpoint import load_classifier, load_encoder, save_model, save_round_model
from pipeline.models import Architecture, build_classifier, build_encoder

ARCH = Architecture(channels=1, width=8, depth=1, num_classes=3, dropout=0.2)


def trained_classifier() -> torch.nn.Module:
    """A classifier whose BatchNorm statistics moved off their initial values, so they must round-trip too."""
    torch.manual_seed(0)
    model = build_classifier(ARCH, mean=[0.3], std=[0.2])
    model.train()
    model(torch.rand(8, 1, 28, 28))
    return model.eval()


def test_classifier_round_trip_keeps_weights_buffers_and_extras(tmp_path):
    model = trained_classifier()
    path = tmp_path / "sub" / "model.pt"
    save_model(path, model, ARCH, classes=["a", "b", "c"], step=7)
    loaded, ckpt = load_classifier(path)
    assert ckpt["arch"] == ARCH.to_dict() and ckpt["classes"] == ["a", "b", "c"] and ckpt["step"] == 7
    expected = model.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


def test_encoder_round_trip(tmp_path):
    arch = Architecture(channels=3, width=8, depth=1)
    torch.manual_seed(0)
    encoder = build_encoder(arch, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    save_model(tmp_path / "encoder.pt", encoder, arch)
    loaded, ckpt = load_encoder(tmp_path / "encoder.pt")
    assert Architecture(**ckpt["arch"]) == arch
    assert torch.equal(loaded.mean, encoder.mean) and torch.equal(
        loaded.stem[0].weight, encoder.stem[0].weight
    )


def test_the_same_model_saved_twice_gives_the_same_bytes(tmp_path):
    """DVC hashes the file: an unchanged model must not look changed (nor depend on the file's name)."""
    model = trained_classifier()
    first, second = tmp_path / "a" / "model.pt", tmp_path / "b" / "other_name.pt"
    save_model(first, model, ARCH, config={"lr": 0.1})
    save_model(second, model, ARCH, config={"lr": 0.1})
    assert first.read_bytes() == second.read_bytes()
    before = first.read_bytes()
    save_model(first, model, ARCH, config={"lr": 0.1})  # overwritten in place
    assert first.read_bytes() == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["model.pt"]  # no temporary file left


def test_a_missing_checkpoint_is_an_error_naming_the_path(tmp_path):
    missing = tmp_path / "models" / "r9" / "model.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"checkpoint not found: {missing}")):
        load_classifier(missing)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_encoder(tmp_path)  # a folder is not a checkpoint either


def test_a_round_model_carries_its_classes_round_and_config(tmp_path):
    path = tmp_path / "r2" / "model.pt"
    save_round_model(path, trained_classifier(), ARCH, ["a", "b", "c"], "r2", {"steps": 5})
    _, ckpt = load_classifier(path)
    assert (ckpt["round"], ckpt["classes"], ckpt["config"]) == ("r2", ["a", "b", "c"], {"steps": 5})
