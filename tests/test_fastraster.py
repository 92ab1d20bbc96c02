"""renderer.fastraster: PyTorch3D's rasteriser with a vectorised CPU backward pass. The forward
pass must be PyTorch3D's own and the gradients those of PyTorch3D's backward pass."""

from __future__ import annotations

import importlib
from dataclasses import replace

import torch

from inference.views import view_cameras
from renderer import fastraster
from renderer.learned import LearnedLook
from renderer.pinhole import sample_cameras
from renderer.prior import sample_scenes
from renderer.render import pack_scene, render
from renderer.world import World

RASTER = importlib.import_module("pytorch3d.renderer.mesh.rasterize_meshes")


def test_importing_the_renderer_installs_the_fast_backward_for_cpu_tensors():
    assert RASTER._RasterizeFaceVerts is fastraster._Dispatch


def _weighted_sum(image: torch.Tensor) -> torch.Tensor:
    return (image * torch.linspace(-1, 1, image.numel()).view_as(image)).sum()


def _flat_soft(scene, world):
    position, yaw = scene.position.clone().requires_grad_(), scene.yaw.clone().requires_grad_()
    image = render(replace(scene, position=position, yaw=yaw), world, "soft", 32, 32, blur_sigma_px=1.0)
    _weighted_sum(image).backward()
    return image.detach(), position.grad, yaw.grad


def _learned(scene, view, world):
    look = LearnedLook(world)
    position = scene.position.clone().requires_grad_()
    image = look.render(replace(scene, position=position), view)
    _weighted_sum(image).backward()
    return image.detach(), position.grad, look.light_dir.grad


def _compare(run) -> list[tuple[torch.Tensor, torch.Tensor]]:
    fast = run()
    fastraster.uninstall()
    try:
        slow = run()
    finally:
        fastraster.install()
    return list(zip(fast, slow))


def test_flat_soft_render_has_pytorch3ds_image_and_gradients():
    world = World(image_size=32)
    scene = sample_scenes(world, 6, seed=3)
    (image, image_ref), *grads = _compare(lambda: _flat_soft(scene, world))
    assert torch.equal(image, image_ref)
    for fast, slow in grads:
        assert slow.abs().max() > 0
        assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-4 * float(slow.abs().max()))


def test_perspective_corrected_learned_look_has_pytorch3ds_image_and_gradients():
    """Barycentric coordinates are perspective-corrected and clipped here: the two backward passes
    take different sides at a few kinks of the clipping (model card), so the typical gradient
    agrees closely and the largest differences stay small."""
    world = World().with_(image_size=40)
    g = torch.Generator().manual_seed(2)
    cams = sample_cameras(world.envelope, 6, g, 40, 40)
    scene = sample_scenes(world, 6, generator=g, cameras=[cams], counts=3)
    (image, image_ref), (pos, pos_ref), (light, light_ref) = _compare(lambda: _learned(scene, view_cameras(cams, world), world))
    assert torch.equal(image, image_ref)
    scale = float(pos_ref.abs().max())
    assert scale > 0 and (pos - pos_ref).abs().max() < 0.01 * scale
    assert (pos - pos_ref).abs().median() < 1e-5 * scale
    assert torch.allclose(light, light_ref, rtol=1e-4, atol=1e-6)


def test_fragment_values_recompute_the_rasterisers_outputs():
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings

    from renderer.camera import p3d_cameras

    world = World(image_size=32)
    packed = pack_scene(sample_scenes(world, 4, seed=5), world)
    for perspective in (False, True):
        settings = RasterizationSettings(image_size=(24, 32), blur_radius=1e-3, faces_per_pixel=6, bin_size=0,
                                         perspective_correct=perspective)
        rasterizer = MeshRasterizer(cameras=p3d_cameras(world, 4, "cpu"), raster_settings=settings)
        frags = rasterizer(packed.meshes)
        proj = rasterizer.transform(packed.meshes)
        face_verts = proj.verts_packed()[proj.faces_packed()]
        zbuf, bary, dists, filled = fastraster.fragment_values(face_verts, frags.pix_to_face, (24, 32),
                                                               perspective, True)
        assert len(filled) > 1000
        assert torch.allclose(zbuf, frags.zbuf.reshape(-1)[filled], atol=1e-5)
        assert torch.allclose(bary, frags.bary_coords.reshape(-1, 3)[filled], atol=1e-4)
        assert torch.allclose(dists, frags.dists.reshape(-1)[filled], atol=1e-6)
