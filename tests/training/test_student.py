import pytest
import torch

from pipeline.losses.semi import weighted_soft_cross_entropy
from pipeline.models import Architecture, build_classifier
from pipeline.training.student import student_loss

# The meta device stands in for a GPU: an op that mixes a meta tensor with one made on the CPU fails, as it
# would with a CUDA tensor, so a tensor built on the wrong device is found without a GPU.
META = torch.device("meta")


def test_the_student_loss_stays_on_the_device_of_its_logits():
    logits_l, logits_u = torch.randn(4, 3, device=META), torch.randn(6, 3, device=META)
    labels = torch.zeros(4, dtype=torch.long, device=META)
    targets, weights = torch.rand(6, 3, device=META), torch.rand(6, device=META)
    loss_u = weighted_soft_cross_entropy(logits_u, targets, weights)
    loss, terms = student_loss(logits_l, labels, logits_u, loss_u, 1.0, 0.1)
    assert loss.device == META and {t.device for t in terms.values()} == {META}


def test_the_student_loss_is_the_sum_of_its_weighted_terms():
    logits_l, logits_u = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    labels, targets = torch.tensor([0]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss_u = weighted_soft_cross_entropy(logits_u, targets, torch.tensor([1.0, 0.0]))
    loss, terms = student_loss(logits_l, labels, logits_u, loss_u, 2.0, 0.5)
    ce = torch.log1p(torch.exp(torch.tensor(-2.0)))  # -log softmax([2, 0])[0]
    assert terms["train/loss_l"] == pytest.approx(ce.item())
    expected = terms["train/loss_l"] + 2.0 * terms["train/loss_u"] + 0.5 * terms["train/entropy"]
    assert loss.item() == pytest.approx(expected.item())


def test_a_noisy_student_trains_forward_on_another_device():
    arch = Architecture(1, 8, 2, num_classes=3, dropout=0.3, stochastic_depth=0.5)
    model = build_classifier(arch).to(META).train()
    logits = model(torch.rand(5, 1, 28, 28, device=META))
    assert logits.shape == (5, 3) and logits.device == META


def test_the_ema_teacher_moves_by_one_minus_decay_and_copies_batchnorm_statistics():
    from pipeline.training.student import update_ema

    model, ema = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        ema.weight.fill_(1.0)
        model.running_mean.fill_(5.0)
    update_ema(ema, model, decay=0.75)
    assert ema.weight.tolist() == [1.5, 1.5]  # 0.75 * 1 + 0.25 * 3
    assert ema.running_mean.tolist() == [5.0, 5.0]
