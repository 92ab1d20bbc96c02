"""Photo-like rendering of a scene under a ``Look``, from any ``Cameras``.

Built from parts like ``renderer.render``: ``pack_scene`` (geometry), ``SceneRasterizer``
(fragments with perspective-correct barycentrics), ``PhotoShader`` (per-pixel lighting), then
the sensor (``apply_sensor``: exposure, white balance, gamma, blur, noise; ``jpeg`` apart, on
8-bit images). ``render_photo`` runs them in order, anti-aliased by supersampling.

PhotoShader, per pixel: the surface point and normal (flat, or interpolated from the corner
normals on curved surfaces when the look is smooth); ambient + each light's Lambert term +
a Blinn-Phong highlight on objects; the table's own colour with a low-frequency texture and a
soft contact shadow under and beside each object, displaced away from the key light (PyTorch3D
casts no shadows: the shadow is a Gaussian footprint blob, darkest at the object's base, shifted
along the key light's direction by the object's height), or, where the look says so, the key
light's true shadows (``cast_shadow``: rays from the table toward the light, cast exactly
against the convex shapes by ``renderer.raycast``); the backdrop a vertical gradient.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from pytorch3d.renderer.mesh.rasterizer import Fragments
from torch import nn
from torch.nn import functional as F

from renderer.appearance import Look
from renderer.meshes import mesh_library
from renderer.pinhole import Cameras, lens_canvas
from renderer.raycast import ray_entries
from renderer.render import PackedScene, RasterSettings, SceneRasterizer, pack_scene
from renderer.scene import SceneBatch
from renderer.world import World


def contact_shadow(xy: torch.Tensor, scene: SceneBatch, world: World, look: Look) -> tuple[torch.Tensor, torch.Tensor]:
    """How much of the key light and of the ambient light the table misses at table points
    ``xy`` (B, H, W, 2), each (B, H, W) in [0, 1).

    Each present object casts a Gaussian blob of its footprint radius x softness, centred at
    its base displaced away from the key light by half its height x cot(light elevation)
    (capped), with the look's strength; an ambient-occlusion blob of half that strength sits
    right under the object."""
    scene = scene.blank_absent()
    radius = mesh_library(world).footprint_radius.to(xy)[scene.shape]  # (B, N)
    height = 2 * scene.position[..., 2]
    key = look.light_dir[:, 0].to(xy)  # (B, 3)
    reach = (key[:, :2] / key[:, 2:].clamp_min(0.25))[:, None, :] * (0.5 * height)[..., None]  # (B, N, 2)
    centre = scene.position[..., :2] - reach
    sigma = radius * look.shadow_softness.to(xy)[:, None]
    d2 = ((xy[:, :, :, None, :] - centre[:, None, None]) ** 2).sum(-1)  # (B, H, W, N)
    d2_base = ((xy[:, :, :, None, :] - scene.position[:, None, None, :, :2]) ** 2).sum(-1)
    on = scene.present[:, None, None, :].to(xy)
    strength = look.shadow_strength.to(xy)[:, None, None, None]
    cast = strength * torch.exp(-d2 / (2 * sigma[:, None, None] ** 2)) * on
    occlusion = 0.5 * strength * torch.exp(-d2_base / (2 * (0.8 * radius[:, None, None]) ** 2)) * on
    return 1 - torch.prod(1 - cast, dim=-1), 1 - torch.prod(1 - occlusion, dim=-1)


RASTER_PIXELS = 20_000_000  # most supersampled pixels rasterised at once (their fragments take ~30 bytes each)

# where the shadow rays leave across the key light's disc, in units of its angular radius: the
# centre and a ring (a fixed pattern, so a render needs no random numbers)
LIGHT_DISC = torch.tensor([[0.0, 0.0]] + [[0.75 * math.cos(a), 0.75 * math.sin(a)]
                                          for a in (k * math.pi / 3 for k in range(6))])


def cast_shadow(point: torch.Tensor, scene: SceneBatch, world: World, look: Look) -> torch.Tensor:
    """(B, H, W) in [0, 1]: the share of the key light's disc that the objects hide from each
    surface point ``point`` (B, H, W, 3), by rays from the point toward ``LIGHT_DISC``'s places
    on a light of angular radius ``look.light_radius_deg`` (the shadow's penumbra)."""
    b, h, w, _ = point.shape
    key = look.light_dir[:, 0].to(point)  # (B, 3), toward the light
    up = torch.tensor([0.0, 0.0, 1.0], device=point.device).expand_as(key)
    side = torch.linalg.cross(key, up)
    side = torch.where(side.norm(dim=-1, keepdim=True) > 1e-6, side, torch.tensor([1.0, 0.0, 0.0]).to(key))
    side = side / side.norm(dim=-1, keepdim=True)
    other = torch.linalg.cross(key, side)
    spread = torch.tan(torch.deg2rad(look.light_radius_deg.to(point)))[:, None, None]  # (B, 1, 1)
    disc = LIGHT_DISC.to(point)
    toward = key[:, None] + spread * (disc[None, :, :1] * side[:, None] + disc[None, :, 1:] * other[:, None])  # (B, S, 3)
    origins = point.reshape(b, -1, 3) + 1e-4 * up[:, None]  # lifted off the table top
    scene = scene.blank_absent()
    hidden = torch.zeros(b, h * w, device=point.device)
    for s in range(toward.shape[1]):
        rays = toward[:, s:s + 1].expand(b, h * w, 3)
        hidden += torch.isfinite(ray_entries(scene, world, origins, rays)).any(1).to(hidden)
    return (hidden / toward.shape[1]).reshape(b, h, w)


def table_texture(xy: torch.Tensor, look: Look) -> torch.Tensor:
    """(B, H, W) multiplicative texture of the table at table points ``xy`` (B, H, W, 2): a
    sum of four plane waves, mean 1, amplitude ``look.table_texture``."""
    w = look.table_waves.to(xy)  # (B, 4, 4): kx, ky, phase, weight
    phase = xy[..., None, 0] * w[:, None, None, :, 0] + xy[..., None, 1] * w[:, None, None, :, 1] + w[:, None, None, :, 2]
    weight = w[:, None, None, :, 3] / w[..., 3].sum(-1).clamp_min(1e-6)[:, None, None, None]
    return 1 + look.table_texture.to(xy)[:, None, None] * (torch.sin(phase) * weight).sum(-1)


class PhotoShader(nn.Module):
    """Fragments (K = 1, perspective-correct) + packed scene + look -> (B, H, W, 3) linear RGB."""

    def forward(self, fragments: Fragments, packed: PackedScene, look: Look, cameras: Cameras,
                scene: SceneBatch, world: World) -> torch.Tensor:
        p2f = fragments.pix_to_face[..., 0]  # (B, H, W), -1 where empty
        face = p2f.clamp_min(0)
        bary = fragments.bary_coords[..., 0, :]  # (B, H, W, 3)
        point = (bary[..., None] * packed.corners[face]).sum(-2)  # (B, H, W, 3) world
        corner_n = packed.normals[face]  # (B, H, W, 3, 3)
        if look.apex_up.any():  # per-vertex normals averaged at a cone's apex: straight up there
            up_here = packed.apex[face] & look.apex_up.to(face.device)[:, None, None, None]
            corner_n = torch.where(up_here[..., None], torch.tensor([0.0, 0.0, 1.0]).to(corner_n), corner_n)
        smooth_n = (bary[..., None] * corner_n).sum(-2)
        smooth_n = smooth_n / smooth_n.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        normal = torch.where(look.smooth[:, None, None, None], smooth_n, packed.face_normals()[face])
        is_table = packed.slot[face] == scene.num_slots
        view = cameras.position[:, None, None, :] - point
        view = view / view.norm(dim=-1, keepdim=True).clamp_min(1e-9)

        shadow, occlusion = contact_shadow(point[..., :2], scene, world, look)
        if look.cast_shadow.any():
            cast = look.cast_shadow.to(shadow.device)
            shadow = torch.where(cast[:, None, None], cast_shadow(point, scene, world, look), shadow)
        shadow = torch.where(is_table, shadow, torch.zeros_like(shadow))
        occlusion = torch.where(is_table, occlusion, torch.zeros_like(occlusion))
        albedo = torch.where(is_table[..., None],
                             look.table_rgb[:, None, None, :] * table_texture(point[..., :2], look)[..., None],
                             packed.albedo[face])
        light = look.ambient_rgb[:, None, None, :] * (1 - occlusion)[..., None]
        highlight = torch.zeros_like(albedo)
        for k in range(look.light_dir.shape[1]):
            l_dir = look.light_dir[:, k][:, None, None, :]
            rgb = look.light_rgb[:, k][:, None, None, :]
            lambert = (normal * l_dir).sum(-1).clamp_min(0)
            lit = (1 - shadow) if k == 0 else torch.ones_like(shadow)
            light = light + rgb * (lambert * lit)[..., None]
            half = l_dir + view
            half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            spec = (normal * half).sum(-1).clamp_min(0) ** look.shininess[:, None, None]
            spec = spec * look.specular[:, None, None] * (lambert > 0) * (~is_table) * lit
            highlight = highlight + rgb * spec[..., None]
        color = albedo * light + highlight
        t = (torch.arange(cameras.height, device=color.device, dtype=color.dtype) + 0.5) / cameras.height
        backdrop = look.background_top[:, None, None, :] * (1 - t)[None, :, None, None] \
            + look.background_bottom[:, None, None, :] * t[None, :, None, None]
        return torch.where((p2f >= 0)[..., None], color, backdrop.expand_as(color)).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) blurred by a per-image Gaussian of ``sigma_px`` (B,) pixels (0 = unchanged)."""
    b, h, w, c = images.shape
    radius = 2
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    s = sigma_px.to(images).clamp_min(1e-3)[:, None]
    k = torch.exp(-x[None] ** 2 / (2 * s ** 2))
    k = k / k.sum(-1, keepdim=True)  # (B, 5); sigma near 0 gives a delta
    k = k.repeat_interleave(c, dim=0)  # (B*3, 5)
    img = images.permute(0, 3, 1, 2).reshape(1, b * c, h, w)
    img = F.pad(img, (radius, radius, radius, radius), mode="replicate")
    img = F.conv2d(img, k[:, None, None, :], groups=b * c)
    img = F.conv2d(img, k[:, None, :, None], groups=b * c)
    return img.reshape(b, c, h, w).permute(0, 2, 3, 1)


def apply_sensor(images: torch.Tensor, look: Look, g: torch.Generator) -> torch.Tensor:
    """Linear (B, H, W, 3) -> the sensor's image: veiling glare, exposure gain and white
    balance, clipping, display gamma, colour saturation, optics blur, then noise (drawn from
    ``g``), clipped to [0, 1]."""
    glare = look.glare.to(images)[:, None, None, None]
    img = images * (1 - glare) + glare
    img = img * (look.gain[:, None] * look.white_balance)[:, None, None, :].to(images)
    img = img.clamp(0, 1) ** (1 / look.gamma.to(images))[:, None, None, None]
    sat, grey = look.saturation.to(images)[:, None, None, None], img.mean(-1, keepdim=True)
    img = torch.where(sat == 1, img, (grey + (img - grey) * sat).clamp(0, 1))  # 1: bit for bit as before
    img = gaussian_blur(img, look.blur_px)
    noise = torch.randn(img.shape, generator=g).to(img) * look.noise_std.to(img)[:, None, None, None]
    return (img + noise).clamp(0, 1)


def jpeg(images: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 through JPEG at per-image ``quality`` (B,) (0 = left as is)."""
    out = images.copy()
    for i, q in enumerate(quality):
        if q > 0:
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, format="JPEG", quality=int(q))
            out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def photo_jpeg(scene: SceneBatch, world: World, cameras: Cameras, look: Look, g: torch.Generator,
               detail: int = 1, supersample: int = 2) -> np.ndarray:
    """``render_photo`` (no gradients) to 8 bits, then through JPEG at each look's quality:
    (B, H, W, 3) uint8, the images a camera under ``look`` would send."""
    with torch.no_grad():
        img = render_photo(scene, world, cameras, look, g, detail, supersample)
    return jpeg((img * 255).round().to(torch.uint8).numpy(), look.jpeg_quality.numpy())


def render_photo(scene: SceneBatch, world: World, cameras: Cameras, look: Look, g: torch.Generator,
                 detail: int = 1, supersample: int = 2) -> torch.Tensor:
    """(B, H, W, 3) float in [0, 1]: the scenes seen by ``cameras`` under ``look``, rendered at
    ``supersample`` times the size and box-filtered, through the cameras' lens distortion where
    they have one (``renderer.pinhole.lens_canvas``: drawn by an ideal pinhole on a wider image,
    then resampled), then through the sensor (no JPEG)."""
    if cameras.distortion is not None:
        ideal, grid = lens_canvas(cameras)
        img = _photo_light(scene, world, ideal, look, detail, supersample).permute(0, 3, 1, 2)
        img = F.grid_sample(img, grid.to(img), mode="bilinear", padding_mode="border", align_corners=False)
        return apply_sensor(img.permute(0, 2, 3, 1), look, g)
    return apply_sensor(_photo_light(scene, world, cameras, look, detail, supersample), look, g)


def _photo_light(scene: SceneBatch, world: World, cameras: Cameras, look: Look, detail: int,
                 supersample: int) -> torch.Tensor:
    """``render_photo`` before the sensor, for ideal pinhole cameras; a batch of more than
    ``RASTER_PIXELS`` supersampled pixels in pieces (each image is drawn alone either way)."""
    big = cameras.resized(cameras.height * supersample, cameras.width * supersample)
    per = max(1, RASTER_PIXELS // (big.height * big.width))
    if scene.batch_size > per:
        return torch.cat([_photo_light(scene.select(slice(i, i + per)), world, cameras.select(slice(i, i + per)),
                                       look.select(slice(i, i + per)), detail, supersample)
                          for i in range(0, scene.batch_size, per)])
    packed = pack_scene(scene, world, detail, look.welded)
    settings = RasterSettings(big.height, big.width, perspective_correct=True)
    fragments = SceneRasterizer(world, settings)(packed.meshes, big)
    img = PhotoShader()(fragments, packed, look, big, scene, world)
    if supersample > 1:
        img = F.avg_pool2d(img.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
    return img
