import pytest
import torch

from pipeline.config.student import OnlineConfig
from pipeline.losses.semi import class_prior
from pipeline.pseudo.online import OnlineTargets


def config(**change) -> OnlineConfig:
    return OnlineConfig(**{"mask": "freematch", "threshold": 0.95, "momentum": 0.9, "teacher_ema": 0.0,
                           "alignment": "uniform",
                           **change})  # fmt: skip


def biased_batches(n: int, seed: int = 0):
    """Batches of predictions that favour class 0 (about 70 % of argmaxes)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield (torch.randn(64, 4, generator=g) + torch.tensor([1.5, 0.0, 0.0, 0.0])).softmax(dim=1)


def test_alignment_moves_the_pseudo_labels_class_shares_towards_the_prior():
    share = lambda p: torch.bincount(p.argmax(dim=1), minlength=4).float() / len(p)  # noqa: E731
    raw, aligned = [], []
    targets = OnlineTargets(config(), class_prior("uniform", [], 4))
    for probs in biased_batches(30):
        raw.append(share(probs))
        aligned.append(share(targets(probs)[0]))
    raw, aligned = torch.stack(raw[10:]).mean(dim=0), torch.stack(aligned[10:]).mean(dim=0)
    assert raw[0] > 0.5
    assert (aligned - 0.25).abs().max() < (raw - 0.25).abs().max() / 2


def test_without_alignment_the_predictions_pass_unchanged():
    targets = OnlineTargets(config(alignment="none"), class_prior("uniform", [], 4))
    probs = next(biased_batches(1))
    assert torch.equal(targets(probs)[0], probs)


def test_the_labeled_prior_is_the_labeled_class_shares():
    assert class_prior("labeled", [0, 0, 0, 1], 3).tolist() == pytest.approx([0.75, 0.25, 0.0])


def test_freematch_thresholds_rise_as_the_model_grows_confident():
    targets = OnlineTargets(config(alignment="none"), class_prior("uniform", [], 4))
    unsure = torch.full((8, 4), 0.25) + torch.tensor([0.05, -0.05, 0.0, 0.0])
    sure = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 8)
    targets(unsure)
    low = targets.threshold()
    for _ in range(50):
        targets(sure)
    assert low == pytest.approx(0.30) and targets.threshold() > 0.9


def test_a_fixed_mask_accepts_at_its_threshold():
    targets = OnlineTargets(
        config(mask="fixed", threshold=0.6, alignment="none"), class_prior("uniform", [], 2)
    )
    _, weights = targets(torch.tensor([[0.7, 0.3], [0.55, 0.45]]))
    assert weights.tolist() == [1.0, 0.0]


def test_the_running_statistics_survive_a_resume_point():
    first = OnlineTargets(config(mask="softmatch"), class_prior("uniform", [], 4))
    batches = list(biased_batches(6))
    for probs in batches[:3]:
        first(probs)
    second = OnlineTargets(config(mask="softmatch"), class_prior("uniform", [], 4))
    second.load_state_dict(first.state_dict())
    for probs in batches[3:]:
        a, b = first(probs), second(probs)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
