"""The generative model's appearance as parameters (theta), learned from unlabelled images.

``LearnedLook`` holds what one camera's images share and our fixed world only guesses: the key
light's direction and colour, the ambient light, the table's colour, the colour outside the
table, each palette colour's shade as this camera sees it, the display gamma, and the pixel
noise of the likelihood. ``LearnedLook.render`` draws scenes with it, softly: each object
face's coverage is a sigmoid of its distance to the pixel (as ``renderer.render.SoftShader``),
so the image is differentiable in the objects' positions and yaws as well as in every
parameter here. Curved faces are smooth-shaded (normals interpolated across each face), as a
photo shows them. It starts at the world's fixed look (``from_world``), so before any learning
it draws what the default renderer draws, up to smooth shading.

What it cannot draw: shadows, highlights, textures and inter-reflections; the learned noise
level absorbs them. ``describe`` reports the values in units a person can read.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from renderer.pinhole import Cameras
from renderer.render import RasterSettings, SceneRasterizer, pack_scene, palette_rgb
from renderer.scene import SceneBatch
from renderer.world import World

MIN_SIGMA = 0.02  # the likelihood's noise floor, pixel units: an 8-bit image holds no finer truth


def _logit(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.02, 0.98)
    return torch.log(x) - torch.log1p(-x)


class LearnedLook(nn.Module):
    """Appearance parameters theta of one camera's images (all images share them)."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        light = torch.tensor(world.light.direction, dtype=torch.float32)
        self.light_dir = nn.Parameter(light / light.norm())
        self.log_key = nn.Parameter(torch.full((3,), math.log(world.light.diffuse)))
        self.log_ambient = nn.Parameter(torch.full((3,), math.log(world.light.ambient)))
        self.palette_logit = nn.Parameter(_logit(palette_rgb(world)))
        self.table_logit = nn.Parameter(_logit(torch.tensor(world.table_rgb)))
        self.background_logit = nn.Parameter(_logit(torch.tensor(world.background_rgb)))
        self.log_gamma = nn.Parameter(torch.zeros(()))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))

    # ---- readable values ---------------------------------------------------------------------
    def direction(self) -> torch.Tensor:
        """(3,) unit vector from the scene toward the key light, table frame."""
        return self.light_dir / self.light_dir.norm().clamp_min(1e-6)

    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp().clamp_min(MIN_SIGMA)

    def palette(self) -> torch.Tensor:
        return torch.sigmoid(self.palette_logit)

    @torch.no_grad()
    def describe(self) -> dict:
        """The learned values: light elevation/azimuth (degrees; azimuth from +x toward +y),
        key and ambient light colour x strength, table and outside colours, each named
        colour's shade (RGB in [0, 1]), gamma and the pixel noise (std, [0, 1] units)."""
        d = self.direction()
        r3 = lambda t: [round(float(v), 4) for v in t]  # noqa: E731
        return {
            "light_elevation_deg": round(math.degrees(math.asin(float(d[2].clamp(-1, 1)))), 2),
            "light_azimuth_deg": round(math.degrees(math.atan2(float(d[1]), float(d[0]))) % 360.0, 2),
            "key_rgb": r3(self.log_key.exp()), "ambient_rgb": r3(self.log_ambient.exp()),
            "table_rgb": r3(torch.sigmoid(self.table_logit)),
            "background_rgb": r3(torch.sigmoid(self.background_logit)),
            "palette": {c.name: r3(rgb) for c, rgb in zip(self.world.colors, self.palette())},
            "gamma": round(float(self.log_gamma.exp()), 4), "noise_std": round(float(self.sigma()), 4),
        }

    # ---- drawing -----------------------------------------------------------------------------
    def render(self, scene: SceneBatch, cameras: Cameras, blur_sigma_px: float = 0.7,
               faces_per_pixel: int = 6) -> torch.Tensor:
        """Scenes (B) seen by ``cameras`` (B, any size) -> (B, H, W, 3) in [0, 1]."""
        world = self.world
        scene = replace(scene, albedo=self.palette()[scene.color])
        packed = pack_scene(scene, world)
        settings = RasterSettings(cameras.height, cameras.width, faces_per_pixel, blur_sigma_px,
                                  perspective_correct=True)
        frags = SceneRasterizer(world, settings)(packed.meshes, cameras)
        p2f = frags.pix_to_face  # (B, H, W, K), nearest first
        face = p2f.clamp_min(0)
        bary = frags.bary_coords.clamp(0, 1)
        bary = bary / bary.sum(-1, keepdim=True).clamp_min(1e-6)
        normal = (bary[..., None] * packed.normals[face]).sum(-2)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        is_table = packed.slot[face] == scene.num_slots
        lambert = (normal * self.direction()).sum(-1).clamp_min(0)[..., None]
        light = self.log_ambient.exp() + self.log_key.exp() * lambert
        albedo = torch.where(is_table[..., None], torch.sigmoid(self.table_logit), packed.albedo[face])
        color = albedo * light
        # a face's soft rim must not tint its own object's other faces (a cylinder's dark side
        # seeping over its lit cap): where the pixel lies inside a face of some object, that
        # object's every fragment takes the colour of the nearest face the pixel is inside
        slot = torch.where(p2f >= 0, packed.slot[face], -1)
        inside = (frags.dists <= 0) & (p2f >= 0)
        first = inside.to(torch.int8).argmax(-1, keepdim=True)  # nearest inside (0 when none)
        hit_slot = torch.where(inside.any(-1, keepdim=True), slot.gather(-1, first), -2)
        hit_color = color.gather(-2, first[..., None].expand(*first.shape, 3))
        color = torch.where((slot == hit_slot)[..., None], hit_color, color)
        # objects blend softly; the table is opaque where it is (its edge is no latent's)
        sigma = settings.sigma_ndc2
        soft = torch.sigmoid(-frags.dists / sigma)
        cover = torch.where(is_table, (frags.dists <= 0).to(soft), soft) * (p2f >= 0)
        through = torch.cumprod(1 - cover, dim=-1)
        before = torch.cat([torch.ones_like(through[..., :1]), through[..., :-1]], dim=-1)
        out = ((cover * before)[..., None] * color).sum(-2) + through[..., -1:] * torch.sigmoid(self.background_logit)
        return out.clamp(1e-6, 1) ** (1 / self.log_gamma.exp())
