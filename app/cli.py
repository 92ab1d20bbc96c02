"""The ``airscene`` command.

    airscene serve [--host 127.0.0.1] [--port 8000] [--weights W]
    airscene infer IMAGE... [--url URL] [--refine N] [--min-confidence C] [--format json|ros]
    airscene render SCENE.json -o OUT.png [--width W] [--height H] [--url URL]
    airscene adapt --images DIR [--camera cam.json] [--weights W] --out MINE.safetensors [--steps N] [--keep K] [--average A]

``infer`` and ``render`` run the model in this process unless ``--url`` names a running server.
A SCENE.json is ``{"objects": [...]}``, an /infer answer, or a bare list of objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.client import Client, ClientError, camera_json
from app.config import SERVER_OPTIONS, Settings
from app.errors import ApiError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airscene", description="Inverse graphics for tabletop scenes.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--weights", type=Path, help="weights .safetensors (default: AIRSCENE_WEIGHTS or the shipped ones)")
    p.add_argument("--log-level", default="info", help="uvicorn log level")

    p = sub.add_parser("infer", help="infer the objects in images; prints JSON")
    p.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files")
    _remote_args(p)
    p.add_argument("--refine", type=_whole(0), default=0, help="test-time refinement steps (0 or more; the "
                                                              "server's limit: GET /v1/limits)")
    p.add_argument("--min-confidence", type=partial(_share, meaning=" (a confidence is a probability)"), default=0.0,
                   help="drop objects below this confidence (0 to 1)")
    p.add_argument("--format", choices=("json", "ros"), default="json", help="answer shape")
    p.add_argument("--camera", type=Path, help="JSON file with the images' camera (pose in the table frame + "
                                               "intrinsics, the /infer camera schema; default: the server's)")

    p = sub.add_parser("render", help="render a scene JSON to a PNG")
    p.add_argument("scene", type=Path, help="scene JSON file ('-' for stdin)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--width", type=_whole(1), help="pixels (default: the scene's, else the size of the image an "
                                                 "/infer answer records, else 64)")
    p.add_argument("--height", type=_whole(1), help="pixels (default: as --width)")
    p.add_argument("--camera", type=Path, help="JSON file with the camera to render from (the /infer camera schema)")
    _remote_args(p)

    _adapt_args(sub.add_parser("adapt", help="fit the network and the renderer's look to your unlabelled images "
                                             "(AIR's ELBO); writes new weights"))

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "infer":
            return _infer(args)
        if args.command == "adapt":
            return _adapt(args)
        return _render(args)
    except (ApiError, ClientError) as e:
        status = getattr(e, "status_code", None) or getattr(e, "status", "")
        print(f"airscene: error {status}: {_detail(e.detail)}", file=sys.stderr)
        return 1
    except ValidationError as e:
        print(f"airscene: {'; '.join(_field_errors(e))}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"airscene: {e}", file=sys.stderr)
        return 1


def _whole(minimum: int) -> Any:
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _share(text: str, below_one: bool = False, meaning: str = "") -> float:
    """argparse type: a number within [0, 1] (``below_one``: [0, 1)); ``meaning`` is added to the
    message for a number outside."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (give one between 0 and 1)") from None
    if not (0.0 <= value < 1.0 if below_one else 0.0 <= value <= 1.0):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1{' (1 itself excluded)' if below_one else ''}{meaning}")
    return value


def _remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="a running server (default: run the model in this process)")
    p.add_argument("--api-key", default=os.environ.get("AIRSCENE_API_KEY"), help="bearer key for --url "
                                                                                "(default: AIRSCENE_API_KEY)")
    p.add_argument("--weights", type=Path, help="weights for the local model")


def _adapt_args(p: argparse.ArgumentParser) -> None:
    from inference.adapt import AdaptConfig

    d = AdaptConfig()
    p.add_argument("--images", type=Path, required=True, help="folder of PNG or JPEG images from one camera")
    p.add_argument("--camera", type=Path, help="JSON file with that camera (the /infer camera schema; "
                                               "default: the world's fixed camera)")
    p.add_argument("--weights", type=Path, help="weights to start from (default: AIRSCENE_WEIGHTS or the shipped ones)")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors, and its .json)")
    p.add_argument("--steps", type=_whole(1), default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch", type=_whole(1), default=d.batch, help=f"images per step (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"the network's learning rate (default {d.lr})")
    p.add_argument("--threads", type=_whole(1), default=d.threads, help=f"torch CPU threads (default {d.threads})")
    p.add_argument("--keep", type=_share, default=d.keep,
                   help=f"share of the starting weights mixed into the weights written, 0..1 (default {d.keep}; "
                        "0: the network as adaptation left it)")
    p.add_argument("--average", type=partial(_share, below_one=True), default=d.average,
                   help=f"share of the last steps whose weights are averaged into the weights written, 0..<1 "
                        f"(default {d.average}; 0: the last step's)")
    p.add_argument("--seed", type=int, default=d.seed, help="the run's randomness")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' "
                                                    "or 'cuda:N'")
    p.add_argument("--restart", action="store_true", help="ignore <out>.ckpt.pt and start over (default: resume)")


def _adapt(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from app.camera import load_camera_file, to_cameras
    from app.engine import pick_device
    from inference.adapt import AdaptCollapse, AdaptConfig, adapt, image_files, load_views
    from inference.checkpoint import read_config
    from renderer.world import World

    weights = args.weights if args.weights is not None else Settings().weights
    world = World.from_dict(read_config(weights)["world"])
    camera = None if args.camera is None else load_camera_file(args.camera)
    files = image_files(args.images)
    views = load_views(files, world, None if camera is None else (lambda _p, h, w: to_cameras(camera, h, w)))
    try:
        device = str(pick_device(args.device))
    except (RuntimeError, ValueError) as e:
        print(f"airscene: --device: {e}", file=sys.stderr)
        return 2
    cfg = replace(AdaptConfig(), steps=args.steps, batch=args.batch, lr=args.lr, threads=args.threads, keep=args.keep,
                  average=args.average, seed=args.seed, device=device)
    try:
        summary = adapt(views, weights, args.out, cfg, resume=not args.restart)
    except AdaptCollapse as e:
        print(f"airscene: adaptation stopped: {e}", file=sys.stderr)
        return 2
    json.dump({"weights": str(args.out), **summary}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    weights = args.weights.resolve() if args.weights is not None else Settings().weights
    if not Path(weights).exists():
        print(f"airscene: weights {weights} not found (set AIRSCENE_WEIGHTS or --weights)", file=sys.stderr)
        return 1
    problem = _unservable(Path(weights)) or _bad_camera_file()
    if problem:
        print(f"airscene: refusing to serve: {problem}", file=sys.stderr)
        return 1
    os.environ["AIRSCENE_WEIGHTS"] = str(weights)  # app.main:app reads its settings from the environment
    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.log_level, **SERVER_OPTIONS)
    return 0


def _unservable(weights: Path) -> str | None:
    """Why the service could not serve ``weights`` (loaded once on the CPU), or None if it can."""
    from inference.checkpoint import load_weights

    try:
        load_weights(weights, "cpu")
    except KeyError as e:
        return f"its config {weights.with_suffix('.json').name} has no {e} section"
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        return str(e)
    return None


def _bad_camera_file() -> str | None:
    """Why the deployment's camera file (``AIRSCENE_CAMERA``) cannot be used, or None (none set, or
    it reads as a camera): refused at start rather than a service that never gets ready."""
    from app.camera import load_camera_file

    path = Settings().camera
    try:
        if path is not None:
            load_camera_file(path)
    except ValueError as e:
        return str(e)
    return None


def _infer(args: argparse.Namespace) -> int:
    if args.url:
        with Client(args.url, api_key=args.api_key) as c:
            answers = c.infer(args.images, refine=args.refine, min_confidence=args.min_confidence, format=args.format,
                              camera=args.camera)
    else:
        from app.schemas import InferParams

        camera = None if args.camera is None else camera_json(args.camera)
        params = InferParams(refine=args.refine, min_confidence=args.min_confidence, format=args.format, camera=camera)
        images = [path.read_bytes() for path in args.images]
        result = asyncio.run(_local(args, lambda s: s.infer(images, params)))
        answers = [a.model_dump(mode="json") for a in result]
    out: Any = answers[0] if len(answers) == 1 else answers
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def _render(args: argparse.Namespace) -> int:
    scene = _read_scene(args.scene)
    if args.width:
        scene["width"] = args.width
    if args.height:
        scene["height"] = args.height
    if args.camera is not None:
        scene["camera"] = json.loads(camera_json(args.camera))
    if args.url:
        with Client(args.url, api_key=args.api_key) as c:
            png = c.render(scene)
    else:
        from app.errors import Unprocessable
        from app.schemas import RenderRequest

        try:
            request = RenderRequest.model_validate(scene)
        except ValidationError as e:
            raise Unprocessable((), "; ".join(_field_errors(e))) from None
        png = asyncio.run(_local(args, lambda s: s.render(request)))
    args.output.write_bytes(png)
    print(f"wrote {args.output} ({len(png)} bytes)", file=sys.stderr)
    return 0


def _read_scene(path: Path) -> dict:
    """A scene file ('-': stdin) -> ``{"objects": [...], ...}``; ValueError naming the file."""
    name = "stdin" if str(path) == "-" else str(path)
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    try:
        scene = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} is not JSON ({e.msg} at line {e.lineno} column {e.colno}); a scene file is "
                         '{"objects": [...]}, an /infer answer, or a list of objects') from None
    if isinstance(scene, list):
        scene = {"objects": scene}
    if not isinstance(scene, dict):
        raise ValueError(f"{name} holds a JSON {type(scene).__name__}; a scene file is "
                         '{"objects": [...]}, an /infer answer, or a list of objects')
    return scene


async def _local(args: argparse.Namespace, call: Any) -> Any:
    """Run ``call(service)`` on a model service in this process (no server, no warm-up)."""
    from app.metrics import Metrics
    from app.service import ModelService

    overrides: dict[str, Any] = {"warmup": False}
    if args.weights is not None:
        overrides["weights"] = args.weights
    service = ModelService(Settings(**overrides), Metrics())
    await service.start()
    try:
        if await service.wait_ready() != "ready":
            raise ValueError(f"could not load the model: {service.error}")
        return await call(service)
    finally:
        await service.stop()


def _field_errors(e: ValidationError) -> list[str]:
    """pydantic's errors as ``field.path: message`` lines."""
    return [f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()]


def _detail(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail)

if __name__ == "__main__":
    sys.exit(main())
