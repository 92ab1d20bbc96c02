"""The generative model's appearance as parameters (theta), learned from unlabelled images.

``LearnedLook`` holds what one camera's images share and our fixed world only guesses: the key
light's direction and colour, the ambient light, the objects' gloss (highlight strength and
sharpness), how rounded a cone's tip shades, the table's colour, the colour outside the table,
each palette colour's shade as this camera sees it, the display gamma, and the pixel noise of
the likelihood. ``LearnedLook.render`` draws scenes with it, softly: each object
face's coverage is a sigmoid of its distance to the pixel (as ``renderer.render.SoftShader``),
so the image is differentiable in the objects' positions and yaws as well as in every
parameter here. Curved faces are smooth-shaded (normals interpolated across each face), as a
photo shows them. It starts at the world's fixed look (``LearnedLook(world)``), so before any
learning it draws about what the default renderer draws (smooth-shaded, a faint gloss, shadows).

Shadows: each object casts the key light's shadow on the table, its mesh flattened along the
light (a planar projected shadow), so the shadow's direction and length follow the learned light
(which they help identify). What it cannot draw: reflections of the surroundings, textures,
soft shadows of large lights and inter-reflections; the learned noise level absorbs them. ``describe`` reports the
values in units a person can read.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
from pytorch3d.structures import Meshes
from torch import nn

from renderer.pinhole import Cameras
from renderer.render import PackedScene, RasterSettings, SceneRasterizer, pack_scene, palette_rgb
from renderer.scene import SceneBatch
from renderer.world import World

MIN_SIGMA = 0.02  # the likelihood's noise floor, pixel units: an 8-bit image holds no finer truth
APEX_START = -3.0  # logit of the apex rounding at the start: 0.05, nearly the true cone's sharp tip


def _coverage(dists: torch.Tensor, sigma_ndc2: float) -> torch.Tensor:
    """How much a face covers a pixel from its signed squared distance: fully inside it, and
    fading as a sigmoid outside it (one-sided, so the seams between an object's own faces do not
    show through); 0/1 for hard edges (sigma 0)."""
    inside = (dists <= 0).to(dists)
    if sigma_ndc2 <= 0:
        return inside
    return torch.maximum(inside, torch.sigmoid(-dists / sigma_ndc2))


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
        self.log_specular = nn.Parameter(torch.tensor(math.log(0.05)))
        self.log_shininess = nn.Parameter(torch.tensor(math.log(16.0)))
        self.apex_logit = nn.Parameter(torch.tensor(APEX_START))
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

    def apex_rounding(self) -> torch.Tensor:
        """How far a cone's normal at its tip is turned from its face's toward straight up, in
        [0, 1]: 0 is a true cone's sharp tip; 1 is how a mesh renderer shades a smooth cone from
        per-vertex normals (the faces around the apex averaged), or a real cone's rounded tip,
        seen from above as a dome's highlight (``LookPrior.apex_probability`` draws the same)."""
        return torch.sigmoid(self.apex_logit)

    @torch.no_grad()
    def describe(self) -> dict:
        """The learned values: light elevation/azimuth (degrees; azimuth from +x toward +y),
        key and ambient light colour x strength, table and outside colours, each named
        colour's shade (RGB in [0, 1]), the cone tip's rounding (``apex_rounding``), gamma and
        the pixel noise (std, [0, 1] units)."""
        d = self.direction()
        r3 = lambda t: [round(float(v), 4) for v in t]  # noqa: E731
        return {
            "light_elevation_deg": round(math.degrees(math.asin(float(d[2].clamp(-1, 1)))), 2),
            "light_azimuth_deg": round(math.degrees(math.atan2(float(d[1]), float(d[0]))) % 360.0, 2),
            "key_rgb": r3(self.log_key.exp()), "ambient_rgb": r3(self.log_ambient.exp()),
            "table_rgb": r3(torch.sigmoid(self.table_logit)),
            "background_rgb": r3(torch.sigmoid(self.background_logit)),
            "palette": {c.name: r3(rgb) for c, rgb in zip(self.world.colors, self.palette())},
            "specular": round(float(self.log_specular.exp()), 4), "shininess": round(float(self.log_shininess.exp()), 2),
            "apex_rounding": round(float(self.apex_rounding()), 4),
            "gamma": round(float(self.log_gamma.exp()), 4), "noise_std": round(float(self.sigma()), 4),
        }

    # ---- drawing -----------------------------------------------------------------------------
    def highlight(self, frags, packed: PackedScene, face: torch.Tensor, normal: torch.Tensor,
                  lambert: torch.Tensor, cameras: Cameras) -> torch.Tensor:
        """(B, H, W, K, 3) the key light's Blinn-Phong highlight on each fragment (a glossy
        object's bright spot), of learned strength and sharpness; only where the surface faces
        the light (``lambert`` > 0)."""
        point = (frags.bary_coords.clamp(0, 1)[..., None] * packed.corners[face]).sum(-2)
        view = cameras.position.to(point)[:, None, None, None, :] - point
        half = self.direction() + view / view.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        spec = (normal * half).sum(-1).clamp(1e-6, 1) ** self.log_shininess.exp() * (lambert > 0)
        return self.log_key.exp() * (self.log_specular.exp() * spec)[..., None]

    def corner_normals(self, packed: PackedScene) -> torch.Tensor:
        """(P, 3, 3) each packed face's corner normals, a cone's apex corners turned toward
        straight up by ``apex_rounding``."""
        up = packed.normals.new_tensor([0.0, 0.0, 1.0])
        rounded = torch.lerp(packed.normals, up.expand_as(packed.normals), self.apex_rounding())
        rounded = rounded / rounded.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return torch.where(packed.apex[..., None], rounded, packed.normals)

    def shadow(self, packed: PackedScene, cameras: Cameras, blur_sigma_px: float) -> torch.Tensor:
        """(B, H, W) how much of the key light the table misses: each object's mesh flattened
        onto the table along the light (a planar projected shadow, exact for a point-like sun
        on a flat table), rasterised softly, so it moves with the objects and the light."""
        d = self.direction()
        d = torch.cat([d[:2], d[2:].clamp_min(0.1)])  # a light at the horizon casts no usable shadow
        verts = packed.meshes.verts_padded()
        flat = verts - (verts[..., 2:] / d[2]) * d
        faces = packed.meshes.faces_padded()
        real = (faces[..., 0] >= 0).sum(1)
        # the table's two faces close each scene's real faces (a shadow is cast by objects only);
        # of a closed convex mesh the faces turned to the light outline its shadow once
        facing = (packed.face_normals() @ d.detach() > 0).split(packed.meshes.num_faces_per_mesh().tolist())
        casting = [f[: int(r) - 2][m[: int(r) - 2]] for f, r, m in zip(faces, real, facing)]
        if not any(len(f) for f in casting):  # no objects anywhere: no shadow
            return verts.new_zeros(verts.shape[0], cameras.height, cameras.width)
        shadow = Meshes(verts=list(flat), faces=casting)
        settings = RasterSettings(cameras.height, cameras.width, 8, blur_sigma_px)
        raster = RasterizationSettings(image_size=(cameras.height, cameras.width), blur_radius=settings.blur_radius,
                                       faces_per_pixel=8, bin_size=0, cull_backfaces=False)
        frags = MeshRasterizer(cameras=cameras.to(verts.device).p3d(), raster_settings=raster)(shadow)
        cover = _coverage(frags.dists, settings.sigma_ndc2) * (frags.pix_to_face >= 0)
        return 1 - torch.prod(1 - cover, dim=-1)

    def render(self, scene: SceneBatch, cameras: Cameras, blur_sigma_px: float = 0.5,
               faces_per_pixel: int = 10) -> torch.Tensor:
        """Scenes (B) seen by ``cameras`` (B, any size) -> (B, H, W, 3) in [0, 1]. With
        ``blur_sigma_px`` 0 the edges are hard (no position gradients; one face per pixel is
        enough). Soft edges need enough ``faces_per_pixel`` that the visible face is among them
        (a sphere's faces are small: 10 at 40 px)."""
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
        normal = (bary[..., None] * self.corner_normals(packed)[face]).sum(-2)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        is_table = packed.slot[face] == scene.num_slots
        lambert = (normal * self.direction()).sum(-1).clamp_min(0)
        lit = torch.where(is_table, 1 - self.shadow(packed, cameras, blur_sigma_px)[..., None], 1.0)
        light = self.log_ambient.exp() + self.log_key.exp() * (lambert * lit)[..., None]
        albedo = torch.where(is_table[..., None], torch.sigmoid(self.table_logit), packed.albedo[face])
        color = albedo * light + self.highlight(frags, packed, face, normal, lambert, cameras) * (~is_table)[..., None]
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
        soft = _coverage(frags.dists, settings.sigma_ndc2)
        cover = torch.where(is_table, (frags.dists <= 0).to(soft), soft) * (p2f >= 0)
        through = torch.cumprod(1 - cover, dim=-1)
        before = torch.cat([torch.ones_like(through[..., :1]), through[..., :-1]], dim=-1)
        out = ((cover * before)[..., None] * color).sum(-2) + through[..., -1:] * torch.sigmoid(self.background_logit)
        return out.clamp(1e-6, 1) ** (1 / self.log_gamma.exp())
