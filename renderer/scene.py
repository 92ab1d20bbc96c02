"""The batched scene representation and its checks.

One scene batch holds B scenes of N object slots each. Slots where ``present`` is False are
ignored by the renderer whatever their other values (they are padding).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, replace

import torch

from renderer.world import World


@dataclass(frozen=True)
class SceneBatch:
    """B scenes, N slots each. World frame: metres, radians, z up.

    present: (B, N) bool, which slots hold an object.
    shape: (B, N) int64, index into ``world.shapes``.
    color: (B, N) int64, index into ``world.colors``.
    position: (B, N, 3) float32, centre of the object's bounding box.
    yaw: (B, N) float32, turn about +z in radians.
    quat: optional (B, N, 4) float32 unit quaternion (x, y, z, w); when given it is the full
        orientation and ``yaw`` is ignored by the renderer (the prior and the network use yaw
        only: the tabletop world turns objects about z).
    albedo: optional (B, N, 3) float32 base RGB per object; when given the renderer uses it
        instead of ``world.colors[color]`` (a blend of palette colours, differentiable: ELBO
        training relaxes the colour choice this way early on).
    """

    present: torch.Tensor
    shape: torch.Tensor
    color: torch.Tensor
    position: torch.Tensor
    yaw: torch.Tensor
    quat: torch.Tensor | None = None
    albedo: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.present.shape[0]

    @property
    def num_slots(self) -> int:
        return self.present.shape[1]

    @property
    def count(self) -> torch.Tensor:
        """(B,) int64 number of present objects."""
        return self.present.sum(dim=1)

    def rotation(self) -> torch.Tensor:
        """(B, N, 3, 3) rotation matrices, object frame -> world frame."""
        if self.quat is not None:
            return quat_to_matrix(self.quat)
        return yaw_to_matrix(self.yaw)

    def to(self, device: torch.device | str) -> SceneBatch:
        return SceneBatch(
            self.present.to(device), self.shape.to(device), self.color.to(device),
            self.position.to(device), self.yaw.to(device),
            None if self.quat is None else self.quat.to(device),
            None if self.albedo is None else self.albedo.to(device),
        )

    def select(self, index: torch.Tensor | slice) -> SceneBatch:
        """Scenes ``index`` of the batch (a slice or an index tensor along B)."""
        return SceneBatch(
            self.present[index], self.shape[index], self.color[index],
            self.position[index], self.yaw[index],
            None if self.quat is None else self.quat[index],
            None if self.albedo is None else self.albedo[index],
        )

    def put(self, index: torch.Tensor, part: SceneBatch) -> SceneBatch:
        """A copy with the scenes at ``index`` (B',) replaced by ``part`` (B' scenes, same slots)."""
        def put(full: torch.Tensor | None, sub: torch.Tensor | None) -> torch.Tensor | None:
            if full is None:
                return None
            full = full.clone()
            full[index] = sub.to(full.dtype)
            return full

        return SceneBatch(*(put(getattr(self, f), getattr(part, f)) for f in
                            ("present", "shape", "color", "position", "yaw", "quat", "albedo")))

    def blank_absent(self) -> SceneBatch:
        """The same scenes with every absent slot reset to shape 0, colour 0, the origin, yaw 0
        (and the identity quaternion, black albedo). Present slots are returned bit for bit.

        Absent slots may hold anything; code that indexes tables or builds vertices from every
        slot calls this first, so garbage there can neither raise nor spread NaNs.
        """
        p = self.present
        quat = None
        if self.quat is not None:
            identity = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=self.quat.dtype, device=self.quat.device)
            quat = torch.where(p[..., None], self.quat, identity)
        albedo = None if self.albedo is None else torch.where(p[..., None], self.albedo, 0.0)
        return SceneBatch(
            p, torch.where(p, self.shape, 0), torch.where(p, self.color, 0),
            torch.where(p[..., None], self.position, 0.0), torch.where(p, self.yaw, 0.0), quat, albedo,
        )

    def detach(self) -> SceneBatch:
        return replace(self, position=self.position.detach(), yaw=self.yaw.detach(),
                       quat=None if self.quat is None else self.quat.detach(),
                       albedo=None if self.albedo is None else self.albedo.detach())

    def validate(self, world: World) -> None:
        """Raise ValueError naming the first bad field."""
        if self.present.dim() != 2:
            raise ValueError(f"present must be (B, N), got shape {tuple(self.present.shape)}")
        b, n = self.present.shape
        if n > world.max_objects:
            raise ValueError(f"too many object slots: N={n} > world.max_objects={world.max_objects}")
        expected = {"shape": (b, n), "color": (b, n), "position": (b, n, 3), "yaw": (b, n)}
        if self.quat is not None:
            expected["quat"] = (b, n, 4)
        if self.albedo is not None:
            expected["albedo"] = (b, n, 3)
        for name, shp in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shp:
                raise ValueError(f"{name} must have shape {shp}, got {got}")
        p = self.present
        for name, limit in (("shape", len(world.shapes)), ("color", len(world.colors))):
            idx = getattr(self, name)[p]
            if idx.numel() and (idx.min() < 0 or idx.max() >= limit):
                bad = idx[(idx < 0) | (idx >= limit)][0].item()
                raise ValueError(f"{name} index {bad} out of range 0..{limit - 1}")
        for name in ("position", "yaw", "quat", "albedo"):
            value = getattr(self, name)
            if value is not None and not torch.isfinite(value[p]).all():
                raise ValueError(f"{name} has non-finite values")
        if self.quat is not None:
            norms = self.quat[p].norm(dim=-1)
            if norms.numel() and (norms < 1e-6).any():
                raise ValueError("quat has a zero-length quaternion")


def empty_scenes(batch: int, slots: int, device: torch.device | str = "cpu") -> SceneBatch:
    """B scenes with N empty slots."""
    return SceneBatch(
        present=torch.zeros(batch, slots, dtype=torch.bool, device=device),
        shape=torch.zeros(batch, slots, dtype=torch.int64, device=device),
        color=torch.zeros(batch, slots, dtype=torch.int64, device=device),
        position=torch.zeros(batch, slots, 3, device=device),
        yaw=torch.zeros(batch, slots, device=device),
    )


def yaw_to_matrix(yaw: torch.Tensor) -> torch.Tensor:
    """(...,) radians -> (..., 3, 3) rotation about +z."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(*yaw.shape, 3, 3)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (x, y, z, w), normalised here -> (..., 3, 3) rotation."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    m = [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
         2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
         2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]
    return torch.stack(m, dim=-1).reshape(*q.shape[:-1], 3, 3)


def yaw_to_quat(yaw: torch.Tensor) -> torch.Tensor:
    """(...,) radians -> (..., 4) quaternion (x, y, z, w) for a turn about +z."""
    half = yaw / 2
    zero = torch.zeros_like(yaw)
    return torch.stack([zero, zero, torch.sin(half), torch.cos(half)], dim=-1)


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """``yaw_to_quat`` of one plain number (radians), without tensors: (0, 0, sin, cos) of half."""
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


def quat_to_yaw(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (x, y, z, w) -> (...,) yaw in radians (heading of the object's +x)."""
    x, y, z, w = q.unbind(-1)
    return torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
