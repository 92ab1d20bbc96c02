"""The supervised counterpart: AIR's encoder with N fixed output slots, trained on labels.

The same CNN as AIR (``inference.network.Encoder``: image -> (B, C + 2, S/4, S/4) features with
coordinate channels) feeds a small head that outputs, for each of N slots at once, the same
distributions AIR outputs per step:

    z_pres   Bernoulli(logit)                       is this slot used?
    z_what   Categorical(shape logits), Categorical(colour logits)
    z_where  (x, y) diagonal Gaussian (metres); yaw von Mises on k * yaw (k = symmetry order)

There is no recurrence and no stopping: every slot is decided in one pass. How a slot reads the
image is ``SupervisedConfig.slot_attention``:

- False (the first version): one MLP over the flattened feature map outputs all slots. Nothing
  ties slot i's colour outputs to the image region slot i's position points at (the model card
  gives what it learned).
- True: each slot gets a query from the global summary and reads the feature cells by softmax
  attention (as in DETR-style set prediction), so its heads see the features (coordinates
  included) and the mean pixel patch of the region it attends. The slots are still fixed and
  decided together; only their read-out is spatial. This is the fair counterpart: the binding
  AIR gets from its attention, without AIR's recurrence or stopping.

Slots are unordered, so the loss is a set loss: the true objects (absent ones included) are
assigned to the slots by the ordering that fits best, ``min`` over the N! orderings (N <= 3: 6;
the same as Hungarian matching on the per-pair negative log-likelihood), and the loss is the negative
log-likelihood of that assignment. Every slot's presence is scored; what/where only for slots
assigned a present object. The loss is therefore invariant to the order of the true objects.

Trained by ``python -m training.train training/recipes/supervised.py`` on the same data and with the
same budget machinery as AIR. Weights are saved like AIR's (safetensors + a json holding
``"supervised"``: the ``SupervisedConfig``, the world and metadata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from inference.checkpoint import config_path, load_tensors, read_config, write_weights
from inference.distributions import Latents, YawTable, greedy, head_sizes, log_prob, object_params
from inference.network import FEATURE_STRIDE, Encoder, JsonConfig, world_sizes
from inference.infer import to_scene
from inference.amortised import attention_cells, orderings, scene_latents
from training.objectives import Objective
from renderer.scene import SceneBatch
from renderer.world import World

ATTENTION_DIM = 64  # width of the slot queries and cell keys (slot_attention)


@dataclass(frozen=True)
class SupervisedConfig(JsonConfig):
    """Architecture of the slot network.

    num_shapes, num_colors: sizes of the categorical heads.
    slots: N, the number of output slots (the most objects one image can hold).
    image_size: side of the square input in pixels (a multiple of 8).
    channels: width of the CNN feature map (as ``AIRConfig.channels``).
    hidden: width of the head's two hidden layers.
    yaw_orders: per shape, its yaw symmetry order k (0 = yaw unobservable).
    position_scale: metres per unit of the position output.
    slot_attention: each slot reads the feature cells by its own softmax attention (True) or one
        MLP over the flattened feature map outputs every slot (False; weights written before the
        field existed).
    """

    num_shapes: int = 6
    num_colors: int = 6
    slots: int = 3
    image_size: int = 64
    channels: int = 64
    hidden: int = 256
    yaw_orders: tuple[int, ...] = (4, 2, 1, 0, 0, 0)
    position_scale: float = 0.25
    slot_attention: bool = False

    def __post_init__(self) -> None:
        if self.image_size % (2 * FEATURE_STRIDE):
            raise ValueError(f"image_size must be a multiple of {2 * FEATURE_STRIDE}, got {self.image_size}")
        self.check_yaw_orders()
        if not 1 <= self.slots <= 6:
            raise ValueError(f"slots must be in 1..6 (the loss enumerates slots! orderings), got {self.slots}")

    @classmethod
    def for_world(cls, world: World, **overrides: Any) -> SupervisedConfig:
        return cls(**{**world_sizes(world), "slots": world.max_objects, **overrides})


class SlotOutput(NamedTuple):
    """Distribution parameters of all N slots (the per-step ``StepOutput`` of AIR, stacked).

    pres_logit (B, N), shape_logits (B, N, S), color_logits (B, N, K), where_mean (B, N, 2)
    metres, where_log_std (B, N, 2), yaw_mu (B, N, 3) mean of k*yaw for k in (1, 2, 4),
    yaw_log_kappa (B, N, 3); attention (B, N, L) each slot's weights over the L feature cells
    (``slot_attention`` only, else None).
    """

    pres_logit: torch.Tensor
    shape_logits: torch.Tensor
    color_logits: torch.Tensor
    where_mean: torch.Tensor
    where_log_std: torch.Tensor
    yaw_mu: torch.Tensor
    yaw_log_kappa: torch.Tensor
    attention: torch.Tensor | None = None


class SupervisedNet(nn.Module):
    """(B, 3, S, S) image in [0, 1] -> ``SlotOutput`` for N slots."""

    def __init__(self, config: SupervisedConfig) -> None:
        super().__init__()
        self.config = config
        c, n = config.channels, config.slots
        self.encoder = Encoder(3, c)  # AIR's encoder, unchanged
        self.reduce = nn.Sequential(nn.Conv2d(c + 2, c, 3, stride=2, padding=1), nn.ReLU())  # (B, C, S/8, S/8)
        cells = (config.image_size // (2 * FEATURE_STRIDE)) ** 2
        self.per_slot = sum(head_sizes(config.num_shapes, config.num_colors))
        h = config.hidden
        summary = [nn.Flatten(), nn.Linear(c * cells, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU()]
        if config.slot_attention:
            self.summary = nn.Sequential(*summary)  # (B, H) the whole image
            self.query = nn.Linear(h, n * ATTENTION_DIM)  # slot i's query (B, N, A)
            self.key = nn.Linear(c + 2, ATTENTION_DIM)  # each feature cell's key (B, L, A)
            self.slot_state = nn.Linear(h, n * h)  # slot i's own view of the summary (B, N, H)
            patch = 3 * FEATURE_STRIDE**2  # the pixels under one feature cell
            self.slot_head = nn.Sequential(nn.Linear(h + c + 2 + patch, h), nn.ReLU(), nn.Linear(h, self.per_slot))
        else:
            self.head = nn.Sequential(*summary, nn.Linear(h, n * self.per_slot))
        self.yaw = YawTable(config.yaw_orders)

    def forward(self, images: torch.Tensor) -> SlotOutput:
        cfg = self.config
        b = images.shape[0]
        features = self.encoder(images - 0.5)  # (B, C + 2, S/4, S/4)
        if cfg.slot_attention:
            g = self.summary(self.reduce(features))  # (B, H)
            cells = features.flatten(2).transpose(1, 2)  # (B, L, C + 2)
            q = self.query(g).view(b, cfg.slots, ATTENTION_DIM)
            att = torch.softmax(q @ self.key(cells).transpose(1, 2) / math.sqrt(ATTENTION_DIM), dim=-1)  # (B, N, L)
            read = att @ cells  # (B, N, C + 2): the attended features and mean coordinates
            patches = F.unfold(images - 0.5, FEATURE_STRIDE, stride=FEATURE_STRIDE).transpose(1, 2)  # (B, L, 3*4*4)
            state = self.slot_state(g).view(b, cfg.slots, -1)
            out = self.slot_head(torch.cat([state, read, att @ patches], dim=-1))  # (B, N, per_slot)
        else:
            out, att = self.head(self.reduce(features)).view(b, cfg.slots, self.per_slot), None
        heads = out.split(head_sizes(cfg.num_shapes, cfg.num_colors), dim=-1)
        return SlotOutput(**object_params(*heads, cfg.position_scale), attention=att)


def slot_log_prob(model: SupervisedNet, out: SlotOutput, target: Latents) -> dict[str, torch.Tensor]:
    """Per-term log q of targets assigned to slots (``inference.distributions.log_prob``), each
    (B, P, N), already masked.

    out: the network's (B, N, ...) slots. target: Latents with a leading (B, P, N) shape:
    P candidate assignments of the true objects to the N slots. pres is scored in every slot;
    what/where only where the assigned object is present.
    """
    p = target.pres.shape[1]
    lifted = SlotOutput(*(None if x is None else x[:, None].expand(-1, p, *x.shape[1:]) for x in out))
    return log_prob(lifted, target, model.yaw)


def supervised_loss(model: SupervisedNet, images: torch.Tensor, scene: SceneBatch, world: World | None = None,
                    attention_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Set loss: mean over images of min over the N! slot assignments of the negative
    log-likelihood of the true objects; and per-term diagnostics (at the best assignment).

    images: (B, 3, S, S) in [0, 1]. scene: B scenes with N slots (any order; absent slots may
    hold anything). With ``world`` and a ``slot_attention`` model, each assignment's score also
    holds AIR's attention target (``objectives.attention_cells``): -log of the weight slot i puts
    on the feature cell under the projected centre of the object assigned to it, for present
    objects, times ``attention_weight``. The labels AIR's amortised training gets, used the same
    way.
    """
    b, n = scene.present.shape
    if n != model.config.slots:
        raise ValueError(f"scene has {n} slots, the model {model.config.slots}")
    out = model(images)
    latents = scene_latents(scene.blank_absent())
    perms = orderings(n, images.device)  # (P, N): slot i gets true object perms[p, i]
    p = perms.shape[0]
    idx = perms[None].expand(b, p, n)
    assign = lambda x: torch.gather(x[:, None].expand(b, p, *x.shape[1:]), 2,  # noqa: E731
                                    idx if x.dim() == 2 else idx[..., None].expand(-1, -1, -1, x.shape[-1]))
    target = Latents(*(assign(x) for x in latents))  # each (B, P, N, ...)
    terms = slot_log_prob(model, out, target)
    if world is not None and out.attention is not None:
        cells = assign(attention_cells(scene, world, images.shape[-1]))  # (B, P, N)
        picked = out.attention[:, None].expand(b, p, -1, -1).gather(-1, cells[..., None])[..., 0]
        terms["attention"] = attention_weight * torch.log(picked + 1e-8) * target.pres
    nll = -sum(t.sum(-1) for t in terms.values())  # (B, P)
    best, which = nll.min(dim=1)
    loss = best.mean()
    stats = {k: -(v.sum(-1).gather(1, which[:, None]).mean().item()) for k, v in terms.items()}
    stats["loss"] = loss.item()
    return loss, stats


@torch.no_grad()
def predict_slots(model: SupervisedNet, images: torch.Tensor) -> Latents:
    """images (B, 3, S, S) in [0, 1] -> Latents (B, N): slots with q(pres) > 0.5 are present,
    moved first (in order of confidence); ``inference.infer.to_scene`` makes a scene of it.
    The caller sets the model's mode (``model.eval()``)."""
    out = model(images)
    prob = torch.sigmoid(out.pres_logit)
    order = prob.argsort(dim=1, descending=True, stable=True)
    take = lambda x: x.gather(1, order if x.dim() == 2 else order[..., None].expand_as(x))  # noqa: E731
    return Latents(*(take(x) for x in greedy(out, model.yaw, (prob > 0.5).float())))


class Supervised(Objective):
    """``supervised_loss`` as a ``training.train`` objective."""

    kind = "supervised"

    def __init__(self, model: SupervisedNet, world: World, attention_weight: float = 1.0) -> None:
        super().__init__(model, world)
        self.attention_weight = attention_weight

    def loss(self, images: torch.Tensor, scene: SceneBatch, index, it: int) -> tuple[torch.Tensor, dict[str, float]]:
        return supervised_loss(self.model, images, scene, self.world, attention_weight=self.attention_weight)

    def predict(self, images: torch.Tensor) -> SceneBatch:
        return to_scene(predict_slots(self.model, images), self.world)

    def export(self, path: str, meta: dict) -> None:
        save_supervised(self.model, self.world, path, meta)


# ---- weights ----------------------------------------------------------------------------------
def save_supervised(model: SupervisedNet, world: World, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``path`` (.safetensors) and its ``.json`` (``"supervised"`` config, world, meta)."""
    write_weights(model, {"supervised": model.config.to_dict(), "world": world.to_dict(), "meta": meta or {}}, path)


def load_supervised(path: str | Path) -> tuple[SupervisedNet, World, dict[str, Any]]:
    """Load weights written by ``save_supervised`` -> (model in eval mode, world, metadata)."""
    doc = read_config(path)
    if "supervised" not in doc:
        raise ValueError(f"{config_path(path)} holds no supervised config (keys: {sorted(doc)}); AIR weights "
                         "load with inference.checkpoint.load_weights")
    model = SupervisedNet(SupervisedConfig.from_dict(doc["supervised"]))
    load_tensors(model, path)
    return model.eval(), World.from_dict(doc["world"]), doc.get("meta", {})
