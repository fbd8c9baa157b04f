"""`abrar`: serve, manage model weights, and matte files from the command line."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from server import settings

EPILOG = """examples:
  abrar serve                                  start the server on 127.0.0.1:8080
  abrar models                                 show which weights are found where
  abrar models --download rvm                  fetch RVM weights into the cache
  abrar remove-bg photo.jpg -o photo.png       cut out one image (RMBG-1.4)
  abrar matte clip.mp4 -o clip.webm            transparent VP9 WebM (RVM)
  abrar matte clip.mp4 -o clip.mp4 --background green
"""


def build_parser() -> argparse.ArgumentParser:
    from server.config import ServerConfig

    parser = argparse.ArgumentParser(
        prog="abrar", description="Self-hosted real-time background removal.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP/WebRTC server",
                           description="Run the server. Every flag can also be set by the env var shown.")
    settings.add_arguments(serve, ServerConfig)

    models = sub.add_parser("models", help="list model weights and download missing ones",
                            description="Show where each checkpoint is found; --download fetches it.")
    models.add_argument("--download", nargs="*", metavar="MODEL", choices=["rvm", "rmbg"],
                        help="download these models (all missing ones if none named)")

    remove = sub.add_parser("remove-bg", help="cut the person out of an image (transparent PNG)")
    remove.add_argument("input", type=Path, help="jpg, png or webp")
    remove.add_argument("-o", "--output", type=Path, required=True, help="output .png (or .jpg with --background)")
    remove.add_argument("--background", default="transparent",
                        help="transparent, green, blue, white, black, #rrggbb, blur or image:PATH")
    # ONNX Runtime cuts RMBG from 2.8 to 1.5 s on 2 cores, but exporting to it takes ~5 s:
    # a loss for a single image
    _add_device_flags(remove, "torch", "; torch by default here: for one image the ~5 s export "
                                       "to ONNX Runtime costs more than it saves")

    matte = sub.add_parser("matte", help="matte a video file (RVM)")
    matte.add_argument("input", type=Path, help="any video FFmpeg can read")
    matte.add_argument("-o", "--output", type=Path, required=True,
                       help=".webm (VP9, alpha when transparent), .mp4 (H.264) or .mov")
    matte.add_argument("--background", default="transparent",
                       help="transparent, green, blue, white, black, #rrggbb, blur or image:PATH")
    matte.add_argument("--crf", type=int, default=None, help="quality (lower is better; codec default if unset)")
    matte.add_argument("--bitrate", default=None, help="target bitrate such as 2M (overrides --crf)")
    matte.add_argument("--no-audio", action="store_true", help="drop the source audio")
    matte.add_argument("--downsample-ratio", type=float, default=None,
                       help="RVM internal scale (default: auto, 256-512 px on the long side)")
    _add_device_flags(matte)
    return parser


def _add_device_flags(p: argparse.ArgumentParser, backend: str = "auto", why: str = "") -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"],
                   help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 (CUDA) or int8 (CPU, ONNX Runtime; RVM only)")
    p.add_argument("--backend", default=backend, choices=["auto", "torch", "onnxruntime"],
                   help=f"model backend (auto: ONNX Runtime on a CPU, torch on a GPU){why}")


def _runtime(args):
    from matting.runtime import MattingRuntime, RuntimeConfig

    return MattingRuntime(RuntimeConfig(device=args.device, precision=args.precision, backend=args.backend))


def cmd_serve(args) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.config import ServerConfig

    try:
        config = settings.apply_args(settings.from_env(ServerConfig), args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print("abrar configuration:")
    for name, value in settings.describe(config):
        print(f"  {name} = {value}")
    try:
        app = create_app(config)
    except ValueError as exc:  # e.g. --model-device cuda without CUDA
        print(f"error: {exc}", file=sys.stderr)
        return 2
    web.run_app(app, host=config.host, port=config.port, print=lambda m: print(m, flush=True))
    return 0


def cmd_models(args) -> int:
    from tqdm import tqdm

    from matting import weights

    wanted = None if args.download is None else (args.download or list(weights.MODELS))
    status = 0
    for key, spec in weights.MODELS.items():
        try:
            found = weights.find_local(key)
        except weights.WeightsError as exc:
            print(f"{key:5} ERROR {exc}")
            status = 1
            continue
        if found is None and wanted is not None and key in wanted:
            bar = tqdm(total=spec.size, unit="B", unit_scale=True, desc=f"{key} download")

            def progress(done, total, bar=bar):
                bar.total = total
                bar.update(done - bar.n)

            try:
                found = weights.fetch(key, progress=progress)
            except weights.WeightsError as exc:
                bar.close()
                print(f"{key:5} ERROR {exc}")
                status = 1
                continue
            bar.close()
        where = str(found) if found else "missing: " + weights.missing_message(key)
        print(f"{key:5} {spec.title} [{spec.licence}]\n      {where}")
    return status


def cmd_remove_bg(args) -> int:
    from matting.compositing import composite, parse_background
    from matting.images import image_format, load_image, save_image
    from matting.result import MatteResult

    try:  # everything the user can get wrong, before loading a model
        background = parse_background(args.background)
        image_format(args.output, alpha=background.transparent)
        if not args.output.parent.is_dir():
            raise ValueError(f"output folder {args.output.parent} does not exist")
        rgb = load_image(args.input)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    alpha = _runtime(args).cutout(rgb)
    out = composite(rgb, MatteResult(alpha=alpha, foreground=rgb.astype("float32") / 255.0), background)
    try:
        save_image(out, args.output)
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({out.shape[1]}x{out.shape[0]}, {'RGBA' if out.shape[2] == 4 else 'RGB'})")
    return 0


def cmd_matte(args) -> int:
    from tqdm import tqdm

    from matting.compositing import parse_background
    from matting.video_file import VideoInputError, VideoOptions, check_output, matte_video_file, probe_video

    try:  # everything the user can get wrong, before loading a model
        if args.downsample_ratio is not None and not 0 < args.downsample_ratio <= 1:
            raise ValueError(f"--downsample-ratio must be in (0, 1], not {args.downsample_ratio}")
        options = VideoOptions(background=parse_background(args.background), crf=args.crf,
                               bitrate=args.bitrate, keep_audio=not args.no_audio,
                               downsample_ratio=args.downsample_ratio)
        check_output(args.output, options)
        info = probe_video(args.input)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.input}: {info.width}x{info.height}, {info.frames} frames at {info.fps:.2f} fps, "
          f"{'with' if info.has_audio else 'no'} audio", file=sys.stderr)
    session = _runtime(args).new_session(downsample_ratio=args.downsample_ratio)
    with tqdm(total=info.frames, unit="frame", desc="matting", dynamic_ncols=True) as bar:
        def progress(p):
            bar.total = p.frames_total
            bar.update(p.frames_done - bar.n)

        try:
            result = matte_video_file(args.input, args.output, session, options, progress=progress)
        except VideoInputError as exc:
            bar.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            bar.close()
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    print(f"wrote {result.output}: {result.frames} frames in {result.seconds:.1f} s ({result.fps:.1f} fps)"
          f"{', with audio' if result.has_audio else ''}")
    return 0


COMMANDS = {"serve": cmd_serve, "models": cmd_models, "remove-bg": cmd_remove_bg, "matte": cmd_matte}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # WeightsError and friends: say what to do, no traceback
        from matting.weights import WeightsError

        if isinstance(exc, WeightsError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
