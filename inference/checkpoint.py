"""Checkpoint I/O.

Training checkpoints (``runs/NAME/ckpt.pt``) are plain dicts (model, optimiser, config, step,
best metric) for resuming. Shipped weights are pickle-free: ``X.safetensors`` holds the
tensors and ``X.json`` beside it holds the architecture (``AIRConfig``), the world the model was
trained for and free-form metadata. Loading checks that the tensors fit the architecture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from inference.network import AIR
from renderer.world import World


def config_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def write_weights(model: torch.nn.Module, doc: dict[str, Any], path: str | Path) -> None:
    """Write the model's tensors to ``path`` (.safetensors) and ``doc`` to the ``.json`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    config_path(path).write_text(json.dumps(doc, indent=1))


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``.json`` beside existing weights; ValueError naming whichever file is missing."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"weights file {path} does not exist")
    cfg = config_path(path)
    if not cfg.exists():
        raise ValueError(f"weights config {cfg} is missing (it sits beside the .safetensors)")
    return json.loads(cfg.read_text())


def load_tensors(model: torch.nn.Module, path: str | Path) -> None:
    """Load ``path``'s tensors into ``model``; ValueError unless they fit it exactly."""
    try:
        missing, unexpected = model.load_state_dict(load_file(str(path), device="cpu"), strict=False)
    except RuntimeError as e:  # a tensor of the wrong size
        raise ValueError(f"{path} does not fit its config: {e}") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not fit its config: missing {missing}, unexpected {unexpected}")


def save_weights(model: AIR, world: World, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``path`` (.safetensors) and its ``.json`` config."""
    write_weights(model, {"air": model.config.to_dict(), "world": world.to_dict(), "meta": meta or {}}, path)


def load_weights(path: str | Path, device: torch.device | str = "cpu",
                 network: type[AIR] = AIR) -> tuple[AIR, World, dict[str, Any]]:
    """Load AIR weights -> (model in eval mode, its world, metadata). ``network``: the class to
    build (an ``AIR`` subclass, e.g. ``experiments.anchored.AnchoredAIR``); its ``config_type``
    reads the ``"air"`` config.

    ValueError naming the file when its config holds no AIR network (the supervised
    counterpart's weights, say: they describe another model under another key)."""
    doc = read_config(path)
    if "air" not in doc:
        other = [k for k in doc if k not in ("world", "meta")]
        raise ValueError(f"{path} is not AIR network weights: its config {config_path(path).name} has "
                         f"{other or 'no model'} where an 'air' section should be (the supervised counterpart "
                         "and other baselines are loaded by their own modules, not served)")
    model = network(network.config_type.from_dict(doc["air"]))
    load_tensors(model, path)
    return model.to(device).eval(), World.from_dict(doc["world"]), doc.get("meta", {})


def interpolate(a: AIR, b: AIR, alpha: float) -> dict[str, torch.Tensor]:
    """The state dict (1 - alpha) * a + alpha * b over every floating tensor (the others, counters,
    are a's): a "model soup" of a fine-tune and the weights it started from, which lie in one
    basin of the loss (Wortsman et al., "Model soups", ICML 2022; "Robust fine-tuning of
    zero-shot models", CVPR 2022). ValueError unless the two have the same tensors."""
    sa, sb = a.state_dict(), b.state_dict()
    if a.config != b.config or sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError("the two weight files are not the same architecture")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    return {k: torch.lerp(sa[k], sb[k].to(sa[k].device), alpha) if sa[k].is_floating_point() else sa[k] for k in sa}
