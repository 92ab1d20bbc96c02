"""The look of a scene as a distribution: lights, materials, table, background, sensor.

``LookPrior`` names every range; ``sample_looks`` draws one ``Look`` per image (seeded);
``default_look`` is the world's fixed look (one light, flat shading, grey table), so the same
shader draws both. Colours are linear RGB in [0, 1] before the sensor; the sensor's gamma,
gain, white balance, blur, noise and JPEG act on the final image (``renderer.photo``).

Defaults are chosen so that a person would call every sample a plausible photo of a tabletop
and would still give each object its colour's name: hue moves at most 10 degrees (the palette's
hues are at least 50 degrees apart), saturation and value by a fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from renderer.scene import SceneBatch
from renderer.world import World

Range = tuple[float, float]

# Colour of a black body at 3000..7500 K in steps of 500 K, as linear-ish RGB normalised to the
# brightest channel. Source: Mitchell Charity, "Blackbody color datafile" (vendian.org, 2001),
# CIE 1964 10-degree observer, sRGB primaries.
_KELVIN = torch.tensor([3000.0, 3500, 4000, 4500, 5000, 5500, 6000, 6500, 7000, 7500])
_KELVIN_RGB = torch.tensor([
    [255, 180, 107], [255, 196, 137], [255, 209, 163], [255, 219, 186], [255, 228, 206],
    [255, 236, 224], [255, 243, 239], [255, 249, 253], [245, 243, 255], [235, 238, 255],
]) / 255.0


def kelvin_rgb(kelvin: torch.Tensor) -> torch.Tensor:
    """(...,) colour temperature in K (clamped to 3000..7500) -> (..., 3) RGB, max channel 1."""
    k = kelvin.clamp(3000.0, 7500.0)
    pos = (k - 3000.0) / 500.0
    lo = pos.floor().long().clamp(0, len(_KELVIN) - 2)
    frac = (pos - lo.float())[..., None]
    return _KELVIN_RGB[lo] * (1 - frac) + _KELVIN_RGB[lo + 1] * frac


@dataclass(frozen=True)
class LookPrior:
    """Ranges of the randomised look; each (low, high) is drawn uniformly.

    key_elevation_deg, key_temperature_k, key_intensity: the main (sun-like) light: its
        elevation above the table (azimuth is uniform all round), colour temperature and
        diffuse strength.
    fill_probability, fill_intensity: chance of a second light from another random direction,
        and its strength; fill_temperature_k its colour.
    ambient: strength of the uniform ambient light; ambient_tint: how far its colour may lean
        toward the key light's opposite (blue sky vs warm room), as a fraction.
    smooth_probability: chance that curved surfaces are smooth-shaded (normals interpolated
        across faces); flat otherwise.
    specular, shininess: Blinn-Phong highlight strength and exponent (sheen of plastic/paint).
    detail_choices: mesh tessellation levels for curved shapes (1 = the world's meshes);
        one is drawn per batch (``renderer.meshes.mesh_library``).
    hue_deg, saturation, value: each object's shade of its named colour: hue shift in
        degrees, saturation and value as factors.
    table_value, table_saturation: the table's brightness and colour strength (hue uniform);
        wood_probability: chance of a wood-like hue (20..40 degrees) instead.
    table_texture: amplitude of the table's low-frequency texture (fraction of its colour).
    background_value, background_saturation: the floor/walls beyond the table.
    shadow_strength: darkness of the soft contact shadow at its core (fraction of the key
        light); shadow_softness: its blur as a multiple of the object's footprint radius.
    cast_shadow_probability: chance that the key light casts ray-traced shadows instead (each
        object's true shadow on the table, as a sun or a lamp casts it: long under a low light),
        softened by the light's angular radius ``light_radius_deg`` (a penumbra). At 0 (the
        default, which the shipped weights were trained with) nothing more is drawn from the
        generator, so sets made before it existed are reproduced byte for byte.
    gain, gamma, white_balance: sensor exposure factor, display gamma, per-channel gain range.
    noise_std: sensor noise std (in [0, 1] pixel units); blur_px: Gaussian blur sigma in pixels
        of the network's view; jpeg_probability, jpeg_quality: chance and quality of JPEG.
    harsh_probability: chance that the sensor works at its limits, as a real camera does in a
        dim room or against a bright window: the exposure is further scaled by a factor drawn
        log-uniformly from ``harsh_gain`` (a quarter of the light, or clipped at twice it) and
        the noise std is drawn from ``harsh_noise_std`` instead (a small sensor at high gain).
        At 0 (the default) nothing more is drawn, as for ``cast_shadow_probability``.
    colour_probability: chance that the camera renders colour away from its calibration, as
        cameras do when set for another light or with another picture profile: white balance
        off along the warm-cool axis (red x e^t, blue x e^-t, t uniform in
        ``colour_warmth``: e^0.4 is about a camera set for daylight under a 3000 K lamp) and
        off green-magenta (green x e^u, u in ``colour_tint``); another tone curve (gamma drawn
        log-uniformly from ``colour_gamma``); colour saturation scaled toward each pixel's grey
        by a factor from ``colour_saturation`` (a hazy lens, a faded profile, a vivid one); and
        veiling glare, stray light lifting the whole frame by a share from ``colour_glare``.
        At 0 (the default) nothing more is drawn.
    apex_probability: chance that a cone's apex is shaded as a mesh with per-vertex normals
        shades it (the normals of the faces around the apex averaged: straight up), as most
        mesh renderers do (Blender's smooth shading among them): the top of a smooth cone then
        shades like a dome. A true cone's surface normal at its apex is its face's, as drawn
        otherwise. Acts on smooth-shaded images only. At 0 (the default) nothing more is drawn.
    welded_probability: chance that a smooth-shaded image's meshes have every edge soft, their
        vertex normals averaged over all faces meeting at a point (``renderer.meshes.welded_normals``),
        as a mesh tool gives when no edge is marked sharp (Blender's "shade smooth", trimesh's
        and Open3D's vertex normals, so pyrender's smooth meshes): a cube's edges and corners,
        a cylinder's rims and a cone's base rim shade rounded, the apex as with ``apex_up``.
        Acts on smooth-shaded images only. At 0 (the default) nothing more is drawn.
    """

    key_elevation_deg: Range = (20.0, 85.0)
    key_temperature_k: Range = (3000.0, 7500.0)
    key_intensity: Range = (0.35, 0.8)
    fill_probability: float = 0.5
    fill_intensity: Range = (0.05, 0.3)
    fill_temperature_k: Range = (4000.0, 7500.0)
    ambient: Range = (0.25, 0.6)
    ambient_tint: Range = (0.0, 0.15)
    smooth_probability: float = 0.7
    specular: Range = (0.0, 0.35)
    shininess: Range = (8.0, 64.0)
    detail_choices: tuple[int, ...] = (1, 2, 3)
    hue_deg: Range = (-10.0, 10.0)
    saturation: Range = (0.75, 1.1)
    value: Range = (0.7, 1.15)
    table_value: Range = (0.3, 0.75)
    table_saturation: Range = (0.0, 0.15)
    wood_probability: float = 0.25
    table_texture: Range = (0.0, 0.15)
    background_value: Range = (0.03, 0.6)
    background_saturation: Range = (0.0, 0.4)
    shadow_strength: Range = (0.2, 0.7)
    shadow_softness: Range = (0.4, 1.0)
    cast_shadow_probability: float = 0.0
    light_radius_deg: Range = (0.5, 6.0)
    gain: Range = (0.8, 1.25)
    gamma: Range = (0.8, 1.25)
    white_balance: Range = (0.92, 1.08)
    noise_std: Range = (0.0, 0.03)
    blur_px: Range = (0.0, 0.7)
    jpeg_probability: float = 0.5
    jpeg_quality: Range = (40.0, 95.0)
    harsh_probability: float = 0.0
    harsh_gain: Range = (0.25, 2.0)
    harsh_noise_std: Range = (0.02, 0.08)
    colour_probability: float = 0.0
    colour_warmth: Range = (-0.4, 0.4)
    colour_tint: Range = (-0.1, 0.1)
    colour_gamma: Range = (0.5, 2.0)
    colour_saturation: Range = (0.35, 1.3)
    colour_glare: Range = (0.0, 0.2)
    apex_probability: float = 0.0
    welded_probability: float = 0.0


# LookPrior fields whose chance at 0 draws nothing: a prior without them writes no such keys, so
# datasets made before they existed resume and reproduce as they were
OPTIONAL_DRAWS = {"cast_shadow_probability": ("cast_shadow_probability", "light_radius_deg"),
                  "harsh_probability": ("harsh_probability", "harsh_gain", "harsh_noise_std"),
                  "colour_probability": ("colour_probability", "colour_warmth", "colour_tint", "colour_gamma",
                                         "colour_saturation", "colour_glare"),
                  "apex_probability": ("apex_probability",),
                  "welded_probability": ("welded_probability",)}


@dataclass(frozen=True)
class Look:
    """The look of B images (L lights each). Directions point from the scene toward the light.

    light_dir: (B, L, 3) unit vectors, world frame. light_rgb: (B, L, 3) diffuse colour x strength
        (0 for an unused light). ambient_rgb: (B, 3).
    specular, shininess: (B,). smooth: (B,) bool, smooth-shade curved faces.
    table_rgb: (B, 3). table_texture: (B,) amplitude; table_waves: (B, 4, 4) per image four
        plane waves over the table (kx, ky in 1/m, phase, weight) making its texture.
    background_top, background_bottom: (B, 3) the backdrop's colour at the image top and bottom.
    shadow_strength, shadow_softness: (B,). cast_shadow: (B,) bool, the key light casts
        ray-traced shadows (``renderer.photo.cast_shadow``) instead of the contact blob;
        light_radius_deg: (B,) the key light's angular radius (its shadows' penumbra).
    gain: (B,), gamma: (B,), white_balance: (B, 3), noise_std: (B,), blur_px: (B,),
    jpeg_quality: (B,) int64, 0 = no JPEG. saturation: (B,) colour saturation factor after the
    tone curve (1 = as rendered); glare: (B,) share of full scale added as veiling glare.
    apex_up: (B,) bool, cones' apex normals averaged (``LookPrior.apex_probability``).
    welded: (B,) bool, every edge soft (``LookPrior.welded_probability``; implies ``apex_up``).
    """

    light_dir: torch.Tensor
    light_rgb: torch.Tensor
    ambient_rgb: torch.Tensor
    specular: torch.Tensor
    shininess: torch.Tensor
    smooth: torch.Tensor
    table_rgb: torch.Tensor
    table_texture: torch.Tensor
    table_waves: torch.Tensor
    background_top: torch.Tensor
    background_bottom: torch.Tensor
    shadow_strength: torch.Tensor
    shadow_softness: torch.Tensor
    cast_shadow: torch.Tensor
    light_radius_deg: torch.Tensor
    gain: torch.Tensor
    gamma: torch.Tensor
    white_balance: torch.Tensor
    noise_std: torch.Tensor
    blur_px: torch.Tensor
    jpeg_quality: torch.Tensor
    saturation: torch.Tensor
    glare: torch.Tensor
    apex_up: torch.Tensor
    welded: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.light_dir.shape[0]

    def select(self, index: torch.Tensor | slice) -> Look:
        return Look(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> Look:
        return Look(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def default_look(world: World, batch: int) -> Look:
    """The world's fixed look: one light, flat shading, no sheen, plain table, no shadows,
    an ideal sensor."""
    d = torch.tensor(world.light.direction, dtype=torch.float32)
    d = d / d.norm()
    z = torch.zeros(batch)
    bg = torch.tensor(world.background_rgb).expand(batch, 3)
    return Look(
        light_dir=d.expand(batch, 1, 3).clone(), light_rgb=torch.full((batch, 1, 3), world.light.diffuse),
        ambient_rgb=torch.full((batch, 3), world.light.ambient), specular=z, shininess=torch.ones(batch),
        smooth=torch.zeros(batch, dtype=torch.bool), table_rgb=torch.tensor(world.table_rgb).expand(batch, 3).clone(),
        table_texture=z, table_waves=torch.zeros(batch, 4, 4), background_top=bg.clone(), background_bottom=bg.clone(),
        shadow_strength=z, shadow_softness=torch.ones(batch), cast_shadow=torch.zeros(batch, dtype=torch.bool),
        light_radius_deg=z, gain=torch.ones(batch), gamma=torch.ones(batch),
        white_balance=torch.ones(batch, 3), noise_std=z, blur_px=z, jpeg_quality=torch.zeros(batch, dtype=torch.int64),
        saturation=torch.ones(batch), glare=z, apex_up=torch.zeros(batch, dtype=torch.bool),
        welded=torch.zeros(batch, dtype=torch.bool),
    )


def _u(r: Range, n: int | tuple, g: torch.Generator) -> torch.Tensor:
    shape = (n,) if isinstance(n, int) else n
    return r[0] + (r[1] - r[0]) * torch.rand(shape, generator=g)


def _log_u(r: Range, n: int, g: torch.Generator) -> torch.Tensor:
    """Drawn log-uniformly from ``r`` (both ends positive)."""
    return torch.exp(_u((math.log(r[0]), math.log(r[1])), n, g))


def _direction(elevation_deg: torch.Tensor, azimuth: torch.Tensor) -> torch.Tensor:
    el = torch.deg2rad(elevation_deg)
    return torch.stack([torch.cos(el) * torch.cos(azimuth), torch.cos(el) * torch.sin(azimuth), torch.sin(el)], -1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(..., 3) hue in [0, 1), saturation, value -> (..., 3) RGB."""
    h, s, v = hsv.unbind(-1)
    k = lambda n: (n + h * 6) % 6  # noqa: E731
    f = lambda n: v - v * s * torch.clamp(torch.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return torch.stack([f(5), f(3), f(1)], dim=-1)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB in [0, 1] -> (..., 3) hue in [0, 1), saturation, value."""
    r, g, b = rgb.unbind(-1)
    mx, mn = rgb.amax(-1), rgb.amin(-1)
    d = mx - mn
    safe = torch.where(d > 0, d, torch.ones_like(d))
    h = torch.where(mx == r, ((g - b) / safe) % 6, torch.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(d > 0, h / 6, torch.zeros_like(h))
    s = torch.where(mx > 0, d / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.zeros_like(mx))
    return torch.stack([h % 1.0, s, mx], dim=-1)


def shade_palette(scene: SceneBatch, world: World, prior: LookPrior, g: torch.Generator) -> torch.Tensor:
    """(B, N, 3) each object's own shade of its named colour (zeros in absent slots)."""
    base = torch.tensor([c.rgb for c in world.colors])[scene.blank_absent().color]  # (B, N, 3)
    hsv = rgb_to_hsv(base)
    b, n = scene.present.shape
    hsv = torch.stack([
        (hsv[..., 0] + _u(prior.hue_deg, (b, n), g) / 360.0) % 1.0,
        (hsv[..., 1] * _u(prior.saturation, (b, n), g)).clamp(0, 1),
        (hsv[..., 2] * _u(prior.value, (b, n), g)).clamp(0, 1),
    ], dim=-1)
    return hsv_to_rgb(hsv) * scene.present[..., None]


def sample_looks(prior: LookPrior, batch: int, g: torch.Generator) -> Look:
    """Draw ``batch`` looks from the prior (CPU, seeded by ``g``)."""
    b = batch
    key_dir = _direction(_u(prior.key_elevation_deg, b, g), torch.rand(b, generator=g) * 2 * math.pi)
    key_rgb = kelvin_rgb(_u(prior.key_temperature_k, b, g)) * _u(prior.key_intensity, b, g)[:, None]
    fill_dir = _direction(_u((15.0, 80.0), b, g), torch.rand(b, generator=g) * 2 * math.pi)
    fill_on = torch.rand(b, generator=g) < prior.fill_probability
    fill_rgb = kelvin_rgb(_u(prior.fill_temperature_k, b, g)) * (_u(prior.fill_intensity, b, g) * fill_on)[:, None]
    # ambient leans away from the key light's colour (sky fill under a warm sun, and so on)
    tint = _u(prior.ambient_tint, b, g)[:, None]
    key_hue = key_rgb / key_rgb.amax(-1, keepdim=True)
    ambient = _u(prior.ambient, b, g)[:, None] * ((1 - tint) + tint * (2 - key_hue)) / (1 + tint * 0.5)
    wood = torch.rand(b, generator=g) < prior.wood_probability
    table_hue = torch.where(wood, _u((20.0, 40.0), b, g) / 360.0, torch.rand(b, generator=g))
    table_sat = torch.where(wood, _u((0.25, 0.5), b, g), _u(prior.table_saturation, b, g))
    table = hsv_to_rgb(torch.stack([table_hue, table_sat, _u(prior.table_value, b, g)], -1))
    waves = torch.stack([
        _u((-40.0, 40.0), (b, 4), g), _u((-40.0, 40.0), (b, 4), g),
        torch.rand(b, 4, generator=g) * 2 * math.pi, torch.rand(b, 4, generator=g)], dim=-1)
    bg_hsv = lambda: torch.stack([torch.rand(b, generator=g), _u(prior.background_saturation, b, g),  # noqa: E731
                                  _u(prior.background_value, b, g)], -1)
    jpeg = torch.rand(b, generator=g) < prior.jpeg_probability
    look = Look(
        light_dir=torch.stack([key_dir, fill_dir], 1), light_rgb=torch.stack([key_rgb, fill_rgb], 1),
        ambient_rgb=ambient, specular=_u(prior.specular, b, g), shininess=_u(prior.shininess, b, g),
        smooth=torch.rand(b, generator=g) < prior.smooth_probability, table_rgb=table,
        table_texture=_u(prior.table_texture, b, g), table_waves=waves,
        background_top=hsv_to_rgb(bg_hsv()), background_bottom=hsv_to_rgb(bg_hsv()),
        shadow_strength=_u(prior.shadow_strength, b, g), shadow_softness=_u(prior.shadow_softness, b, g),
        cast_shadow=torch.zeros(b, dtype=torch.bool), light_radius_deg=torch.zeros(b),
        gain=_u(prior.gain, b, g), gamma=_u(prior.gamma, b, g), white_balance=_u(prior.white_balance, (b, 3), g),
        noise_std=_u(prior.noise_std, b, g), blur_px=_u(prior.blur_px, b, g),
        jpeg_quality=torch.where(jpeg, _u(prior.jpeg_quality, b, g).round().long(), torch.zeros(b, dtype=torch.int64)),
        saturation=torch.ones(b), glare=torch.zeros(b), apex_up=torch.zeros(b, dtype=torch.bool),
        welded=torch.zeros(b, dtype=torch.bool),
    )
    if prior.cast_shadow_probability > 0:  # drawn last, and only then: older seeds keep their looks
        look = replace(look, cast_shadow=torch.rand(b, generator=g) < prior.cast_shadow_probability,
                       light_radius_deg=_u(prior.light_radius_deg, b, g))
    if prior.harsh_probability > 0:  # drawn after the shadows, and only then
        harsh = torch.rand(b, generator=g) < prior.harsh_probability
        factor = _log_u(prior.harsh_gain, b, g)
        noise = _u(prior.harsh_noise_std, b, g)
        look = replace(look, gain=torch.where(harsh, look.gain * factor, look.gain),
                       noise_std=torch.where(harsh, noise, look.noise_std))
    if prior.colour_probability > 0:  # drawn after the harsh sensor, and only then
        off = torch.rand(b, generator=g) < prior.colour_probability
        warmth, tint = _u(prior.colour_warmth, b, g), _u(prior.colour_tint, b, g)
        balance = torch.exp(torch.stack([warmth, tint, -warmth], -1))
        gamma = _log_u(prior.colour_gamma, b, g)
        saturation, glare = _u(prior.colour_saturation, b, g), _u(prior.colour_glare, b, g)
        look = replace(look, white_balance=torch.where(off[:, None], look.white_balance * balance, look.white_balance),
                       gamma=torch.where(off, gamma, look.gamma), saturation=torch.where(off, saturation, look.saturation),
                       glare=torch.where(off, glare, look.glare))
    if prior.apex_probability > 0:  # drawn after the colour rendering, and only then
        look = replace(look, apex_up=look.smooth & (torch.rand(b, generator=g) < prior.apex_probability))
    if prior.welded_probability > 0:  # drawn after the apex, and only then
        look = replace(look, welded=look.smooth & (torch.rand(b, generator=g) < prior.welded_probability))
    return look
