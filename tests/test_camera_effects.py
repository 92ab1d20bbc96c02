"""bench.camera_effects: each effect is the physics it claims (small synthetic images)."""

from __future__ import annotations

import math

import pytest
import torch

from bench import camera_effects as ce
from renderer.pinhole import look_at_cameras


@pytest.fixture()
def cams():
    return look_at_cameras(torch.tensor([[0.0, -0.8, 0.8]]), torch.zeros(1, 3), torch.tensor([60.0]), 60, 80)


def test_vignetting_is_cos4_of_the_angle_off_the_axis(cams):
    img = torch.ones(1, 3, 60, 80)
    out = ce.vignetting(img, cams, torch.Generator())
    f, (cx, cy) = float(cams.focal[0, 0]), cams.principal[0].tolist()
    u, v = 0.5, 0.5  # the top-left pixel centre
    angle = math.atan(math.hypot(u - cx, v - cy) / f)
    assert float(out[0, 1, 0, 0]) == pytest.approx(math.cos(angle) ** 4, rel=1e-4)
    assert float(out[0, 1, 30, 40]) > 0.999  # beside the principal point: all the light
    assert float(out[0, 0, 0, 0]) < 0.75  # a 60-degree camera's corner loses over a quarter


def test_geometric_effects_keep_the_centre_and_a_flat_image(cams):
    g = torch.Generator()
    flat = torch.full((1, 3, 60, 80), 0.4)
    for effect in (ce.motion_blur, ce.chromatic_aberration, ce.defocus, ce.barrel):
        assert torch.allclose(effect(flat, cams, g), flat, atol=1e-5), effect.__name__
    ramp = torch.linspace(0, 1, 80).expand(1, 3, 60, 80).contiguous()
    assert torch.allclose(ce.barrel(ramp, cams, g, k1=0.0), ramp, atol=1e-5)  # no distortion: the same image
    assert not torch.allclose(ce.barrel(ramp, cams, g), ramp, atol=1e-3)
    aberrated = ce.chromatic_aberration(ramp, cams, g)
    assert torch.equal(aberrated[:, 1], ramp[:, 1])  # green is the reference
    assert float((aberrated[:, 0] - ramp[:, 0]).abs().max()) > 1e-4  # red moved


def test_exposure_effects_scale_the_light_and_noise_has_its_stated_spread(cams):
    mid = torch.full((1, 3, 60, 80), 0.5)
    g = torch.Generator().manual_seed(0)
    dim = ce.low_light(mid, cams, g)
    assert float(dim.mean()) == pytest.approx(0.5 / 3, abs=0.01)
    assert float(dim.std()) == pytest.approx(0.06, rel=0.1)
    gained = ce.high_gain(mid, cams, g)
    assert float(gained.mean()) == pytest.approx(0.5, abs=0.01)  # the exposure restored
    assert float(gained.std()) == pytest.approx(0.1, rel=0.1)
    assert torch.equal(ce.overexposure(mid, cams, g), torch.full_like(mid, 0.9))
    assert float(ce.overexposure(torch.ones_like(mid), cams, g).max()) == 1.0  # clipped


def test_colour_effects_keep_grey_grey_or_move_it_as_stated(cams):
    g = torch.Generator()
    grey = torch.full((1, 3, 60, 80), 0.5)
    red = torch.zeros(1, 3, 60, 80)
    red[:, 0] = 0.8
    warm = ce.EFFECTS["white balance off, warm (R x1.3, B x0.7)"](grey, cams, g)
    assert warm[0, :, 0, 0].tolist() == pytest.approx([0.65, 0.5, 0.35])
    flat = ce.EFFECTS["flat tone curve (values ^ 1/1.8)"](grey, cams, g)
    assert float(flat.mean()) == pytest.approx(0.5 ** (1 / 1.8))  # lifted mid-tones; black and white stay
    assert torch.equal(ce.washed_out(0.5)(grey, cams, g), grey)  # grey has no colour to lose
    washed = ce.EFFECTS["washed-out colour (saturation 50%)"](red, cams, g)
    assert washed[0, :, 0, 0].tolist() == pytest.approx([0.4 + 0.8 / 6, 0.8 / 6, 0.8 / 6])
    quarter = ce.EFFECTS["washed-out colour (saturation 25%)"](red, cams, g)
    assert quarter[0, :, 0, 0].tolist() == pytest.approx([0.2 + 0.75 * 0.8 / 3, 0.75 * 0.8 / 3, 0.75 * 0.8 / 3])
    tungsten = ce.EFFECTS["white balance off, tungsten (R x1.6, B x0.55)"](grey, cams, g)
    assert tungsten[0, :, 0, 0].tolist() == pytest.approx([0.8, 0.5, 0.275])
    glared = ce.veiling_glare(torch.zeros_like(grey), cams, g)
    assert float(glared.min()) == pytest.approx(0.15) and float(ce.veiling_glare(torch.ones_like(grey), cams, g).max()) == 1.0
