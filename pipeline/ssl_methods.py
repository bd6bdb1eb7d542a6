"""Self-supervised methods: each a small module holding its heads and buffers, computing its loss on views.

Every method takes the shared encoder and a list of augmented views (B, C, H, W) and returns the loss and a
dict of values to log. Methods with a momentum (EMA) network update it in `after_step`, under no_grad.
The losses themselves are pure functions in `pipeline.losses`.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import config as C
from pipeline.losses.clustering import swav_loss
from pipeline.losses.combine import uncertainty_weighting
from pipeline.losses.contrastive import info_nce, nt_xent
from pipeline.losses.distillation import byol_loss, dino_loss, update_center
from pipeline.losses.reconstruction import masked_l1, patch_mask
from pipeline.losses.redundancy import barlow_twins_loss, vicreg_loss
from pipeline.models import Encoder
from pipeline.schedules import linear_ramp

Logs = dict[str, float]


def mlp(in_dim: int, hidden: int, out_dim: int, last_bn: bool = False) -> nn.Sequential:
    """Linear -> BN -> ReLU -> Linear (SimCLR's projection head; BYOL's projector and predictor)."""
    layers: list[nn.Module] = [
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
    ]
    layers.append(nn.Linear(hidden, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- m * target + (1 - m) * online, parameters and buffers (BatchNorm statistics) alike."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule: tau = 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, from base up to 1."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class SSLMethod(nn.Module):
    n_views = 2

    def loss(self, encoder: Encoder, views: list[torch.Tensor], step: int) -> tuple[torch.Tensor, Logs]:
        raise NotImplementedError

    def after_step(self, encoder: Encoder, step: int, total_steps: int) -> None:
        """Called after each optimizer step (EMA updates)."""


class SimCLR(SSLMethod):
    def __init__(self, cfg: C.SimCLRConfig, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)

    def loss(self, encoder, views, step):
        z = self.head(encoder(torch.cat(views)))  # (2B, P): both views in one batch, so BN sees both
        return nt_xent(*z.chunk(2), self.cfg.temperature), {}


class MoCo(SSLMethod):
    """MoCo v2: MLP head, momentum key encoder, a queue of negatives."""

    def __init__(self, cfg: C.MoCoConfig, encoder: Encoder, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(encoder.feature_dim, encoder.feature_dim, dim)
        self.key_encoder, self.key_head = frozen_copy(encoder), frozen_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))  # a buffer: resume points keep it

    def loss(self, encoder, views, step):
        q = self.head(encoder(views[0]))
        with torch.no_grad():
            k = F.normalize(self.key_head(self.key_encoder(views[1])), dim=1)
        loss = info_nce(q, k, self.queue.clone(), self.cfg.temperature)
        self._enqueue(k)
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        idx = (self.pointer + torch.arange(len(keys), device=keys.device)) % len(self.queue)
        self.queue[idx] = keys
        self.pointer.fill_(int(idx[-1] + 1) % len(self.queue))

    def after_step(self, encoder, step, total_steps):
        ema_update(self.key_encoder, encoder, self.cfg.momentum)
        ema_update(self.key_head, self.head, self.cfg.momentum)


class BYOL(SSLMethod):
    def __init__(self, cfg: C.BYOLConfig, encoder: Encoder, dim: int):
        super().__init__()
        self.cfg = cfg
        self.projector = mlp(encoder.feature_dim, encoder.feature_dim, dim)
        self.predictor = mlp(dim, encoder.feature_dim, dim)
        self.target_encoder, self.target_projector = frozen_copy(encoder), frozen_copy(self.projector)

    def loss(self, encoder, views, step):
        p1, p2 = self.predictor(self.projector(encoder(torch.cat(views)))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(torch.cat(views))).chunk(2)
        return byol_loss(p1, z2) + byol_loss(p2, z1), {}

    def after_step(self, encoder, step, total_steps):
        tau = cosine_momentum(self.cfg.momentum, step, total_steps)
        ema_update(self.target_encoder, encoder, tau)
        ema_update(self.target_projector, self.projector, tau)


class DINOHead(nn.Module):
    """MLP -> L2-normalized bottleneck -> weight-normalized linear layer to K outputs (DINO's head)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(hidden, out_dim, bias=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(h), dim=1))


class DINO(SSLMethod):
    def __init__(self, cfg: C.DINOConfig, encoder: Encoder, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, DINOHead(encoder.feature_dim, dim, cfg.out_dim)
        self.teacher_encoder, self.teacher_head = frozen_copy(encoder), frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))

    def loss(self, encoder, views, step):
        student = self.head(encoder(torch.cat(views))).chunk(len(views))
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(torch.cat(views))).chunk(len(views))
        cfg = self.cfg
        loss = dino_loss(
            list(student), list(teacher), self.center, cfg.student_temperature, cfg.teacher_temperature
        )
        self.center = update_center(self.center, list(teacher), cfg.center_momentum)
        return loss, {}

    def after_step(self, encoder, step, total_steps):
        tau = cosine_momentum(self.cfg.momentum, step, total_steps)
        ema_update(self.teacher_encoder, encoder, tau)
        ema_update(self.teacher_head, self.head, tau)


class SwAV(SSLMethod):
    def __init__(self, cfg: C.SwAVConfig, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)
        self.prototypes = nn.Linear(dim, cfg.prototypes, bias=False)

    def loss(self, encoder, views, step):
        with torch.no_grad():  # prototypes stay on the unit sphere
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.prototypes.weight.requires_grad_(step >= self.cfg.freeze_prototypes_steps)
        z = F.normalize(self.head(encoder(torch.cat(views))), dim=1)
        s1, s2 = self.prototypes(z).chunk(2)  # (B, K) each
        cfg = self.cfg
        return swav_loss(s1, s2, cfg.temperature, cfg.epsilon, cfg.sinkhorn_iterations), {}


class BarlowTwins(SSLMethod):
    def __init__(self, cfg: C.BarlowTwinsConfig, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)

    def loss(self, encoder, views, step):
        z1, z2 = self.head(encoder(torch.cat(views))).chunk(2)
        return barlow_twins_loss(z1, z2, self.cfg.lambd), {}


class VICReg(SSLMethod):
    def __init__(self, cfg: C.VICRegConfig, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)

    def loss(self, encoder, views, step):
        z1, z2 = self.head(encoder(torch.cat(views))).chunk(2)
        cfg = self.cfg
        return vicreg_loss(z1, z2, cfg.sim_weight, cfg.var_weight, cfg.cov_weight), {}


class PixelDecoder(nn.Module):
    """SimMIM's light decoder for a CNN: 1x1 conv to C * 4 * 4 values per cell, pixel-shuffled to H x W."""

    def __init__(self, feature_dim: int, channels: int, stride: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(feature_dim, channels * stride * stride, 1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.proj(feature_map))  # (B, C, H, W)


class MaskedImageModel(nn.Module):
    """Masks square patches of the (normalized) input with a learned token and reconstructs them."""

    def __init__(self, feature_dim: int, channels: int, mask_ratio: float, patch: int):
        super().__init__()
        self.mask_ratio, self.patch = mask_ratio, patch
        self.mask_token = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.decoder = PixelDecoder(feature_dim, channels)
        self.generator = torch.Generator().manual_seed(0)

    def get_extra_state(self) -> torch.Tensor:  # the mask generator's state goes into state_dict()
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def loss(self, encoder: Encoder, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        # (B, 1, H, W), drawn on the CPU from the seeded generator whatever device the images are on
        mask = patch_mask(b, h, w, self.patch, self.mask_ratio, self.generator).to(images.device)
        target = encoder.normalize(images)
        masked = target * (1 - mask) + self.mask_token * mask
        reconstruction = self.decoder(encoder.feature_map(masked, normalized=True))[:, :, :h, :w]
        if self.mask_ratio == 0:  # plain autoencoding: every pixel counts
            mask = torch.ones_like(mask)
        return masked_l1(reconstruction, target, mask)


class SimMIM(SSLMethod):
    n_views = 1

    def __init__(self, cfg: C.SimMIMConfig, feature_dim: int, channels: int):
        super().__init__()
        self.mim = MaskedImageModel(feature_dim, channels, cfg.mask_ratio, cfg.patch)

    def loss(self, encoder, views, step):
        return self.mim.loss(encoder, views[0]), {}


class Rotation(SSLMethod):
    """Rotation prediction (Gidaris et al. 2018): every image at 0, 90, 180 and 270 degrees in one batch."""

    n_views = 1

    def __init__(self, cfg: C.RotationConfig, feature_dim: int):
        super().__init__()
        self.head = nn.Linear(feature_dim, 4)

    def loss(self, encoder, views, step):
        x = views[0]
        rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])  # (4B, C, H, W)
        labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
        logits = self.head(encoder(rotated))
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return F.cross_entropy(logits, labels), {"ssl/rotation_accuracy": accuracy}


class Hybrid(SSLMethod):
    """Reconstruction + discrimination on one encoder: SimMIM-style masked reconstruction of the first view
    and NT-Xent between the two views, combined by a fixed rule, a warm-up of the contrastive term, or learned
    uncertainty weights (one log-variance per loss)."""

    def __init__(self, cfg: C.HybridConfig, feature_dim: int, channels: int, dim: int, steps_per_epoch: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)
        self.mim = MaskedImageModel(feature_dim, channels, cfg.mask_ratio, cfg.patch)
        self.log_variances = nn.Parameter(torch.zeros(2))  # used by the uncertainty rule only
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)

    def loss(self, encoder, views, step):
        cfg = self.cfg
        reconstruction = self.mim.loss(encoder, views[0])
        z = self.head(encoder(torch.cat(views)))
        contrastive = nt_xent(*z.chunk(2), cfg.temperature)
        if cfg.combine == "uncertainty":
            total = uncertainty_weighting(torch.stack([reconstruction, contrastive]), self.log_variances)
            w_rec, w_con = torch.exp(-self.log_variances.detach()).tolist()
        else:
            w_rec, w_con = cfg.reconstruction_weight, cfg.contrastive_weight
            if cfg.combine == "warmup":
                w_con = linear_ramp(step, self.warmup_steps, cfg.contrastive_weight)
            total = w_rec * reconstruction + w_con * contrastive
        logs = {"ssl/loss_reconstruction": reconstruction.item(), "ssl/loss_contrastive": contrastive.item(),
                "ssl/weight_reconstruction": w_rec, "ssl/weight_contrastive": w_con}  # fmt: skip
        return total, logs


def build_method(cfg: C.PretrainConfig, encoder: Encoder, channels: int, steps_per_epoch: int) -> SSLMethod:
    m, d, f = cfg.method_config(), cfg.projection_dim, encoder.feature_dim
    builders = {
        "simclr": lambda: SimCLR(m, f, d),
        "moco": lambda: MoCo(m, encoder, d),
        "byol": lambda: BYOL(m, encoder, d),
        "dino": lambda: DINO(m, encoder, d),
        "swav": lambda: SwAV(m, f, d),
        "barlow_twins": lambda: BarlowTwins(m, f, d),
        "vicreg": lambda: VICReg(m, f, d),
        "simmim": lambda: SimMIM(m, f, channels),
        "rotation": lambda: Rotation(m, f),
        "hybrid": lambda: Hybrid(m, f, channels, d, steps_per_epoch),
    }
    return builders[cfg.method]().to(memory_format=torch.channels_last)
