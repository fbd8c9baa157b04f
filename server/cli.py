"""`abrar`: serve, manage model weights, and matte files from the command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server import logs, settings

EPILOG = """examples:
  abrar serve                                  start the server on 127.0.0.1:8080
  abrar models                                 show which weights are found where
  abrar models --download rvm                  fetch RVM weights into the cache
  abrar remove-bg photo.jpg -o photo.png       cut out one image (RVM for people, else RMBG)
  abrar remove-bg shots/ -o cutouts/ --crop    every image in a folder, cropped to the subject
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
                        help="download these models (all missing ones if none named); needs internet access")
    _add_models_dir_flag(models)

    remove = sub.add_parser(
        "remove-bg", help="cut the subject out of images (transparent PNG by default)",
        description="Cut the subject out of one image, or of many (files and folders) into an output "
                    "folder, skipping outputs that exist. The options are those of POST /remove-bg.")
    remove.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="jpg, png or webp files, or folders of them")
    remove.add_argument("-o", "--output", type=Path, required=True,
                        help="output file for one input (.png, .webp, or .jpg with a background); "
                             "otherwise a folder (created if missing)")
    remove.add_argument("--model", default="auto", choices=["auto", "rvm", "rmbg"],
                        help="auto: RVM when the photo shows a person, else RMBG (default auto)")
    remove.add_argument("--format", choices=["png", "webp", "jpeg", "mask"],
                        help="png, webp, jpeg or mask (the alpha as a grey PNG); default: from the "
                             "output file's suffix, png in a folder")
    remove.add_argument("--background", "--background-type", dest="background", default="transparent",
                        help="transparent, green, blue, white, black, #rrggbb, blur, blur:N or image:PATH")
    remove.add_argument("--background-file", type=Path, help="an image to put behind the subject")
    remove.add_argument("--foreground", default="estimated", choices=["estimated", "original"],
                        help="edge colours: estimated without the old background (default), or the "
                             "photo's original pixels")
    remove.add_argument("--crop", action="store_true", help="crop to the subject plus --crop-margin")
    remove.add_argument("--crop-margin", type=int, default=0, help="pixels around the subject when cropping")
    remove.add_argument("--max-size", type=int, help="longest side of the output in pixels")
    remove.add_argument("--overwrite", action="store_true", help="redo outputs that already exist in the folder")
    _add_device_flags(remove, None, "; default: torch for one image (exporting to ONNX Runtime takes "
                                    "seconds), auto for several")

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


def _add_models_dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, default=None,
                   help="folder with the checkpoints, searched first (env ABRAR_MODELS_DIR; then ./models, "
                        "then the cache)")


def _add_device_flags(p: argparse.ArgumentParser, backend: str | None = "auto", why: str = "") -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"],
                   help="auto (fp16 on CUDA; on a CPU int8 RVM in ONNX Runtime, and RMBG in bf16 where the CPU "
                        "has AMX or AVX512-BF16, else fp32), fp32, fp16 (CUDA) or int8 (CPU, ONNX Runtime; RVM only)")
    p.add_argument("--backend", default=backend, choices=["auto", "torch", "onnxruntime"],
                   help=f"model backend (auto: ONNX Runtime on a CPU, torch on a GPU){why}")
    _add_models_dir_flag(p)


def _runtime(args, backend: str | None = None):
    from matting.runtime import MattingRuntime, RuntimeConfig

    return MattingRuntime(RuntimeConfig(device=args.device, precision=args.precision,
                                        backend=args.backend or backend or "auto", models_dir=args.models_dir))


def cmd_serve(args) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.config import ServerConfig

    try:
        config = settings.apply_args(settings.from_env(ServerConfig), args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, secrets=[config.api_key])
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
            found = weights.find_local(key, models_dir=args.models_dir)
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
                found = weights.fetch(key, progress=progress, models_dir=args.models_dir)
            except weights.WeightsError as exc:
                bar.close()
                print(f"{key:5} ERROR {exc}")
                status = 1
                continue
            bar.close()
        if found is None:
            status = 1  # scripts and set-up checks can rely on the exit code
        where = str(found) if found else "MISSING. " + weights.missing_message(key, models_dir=args.models_dir)
        print(f"{key:5} {spec.title} [{spec.licence}]\n      {where}")
    return status


def cmd_remove_bg(args) -> int:
    from tqdm import tqdm

    from server.cli_remove_bg import plan_cutouts

    try:  # everything the user can get wrong, before loading a model
        plan = plan_cutouts(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if plan.skipped:
        print(f"skipping {len(plan.skipped)} image(s) whose output exists (--overwrite to redo them)",
              file=sys.stderr)
    if not plan.jobs:
        return 0
    runtime = _runtime(args, "torch" if len(plan.jobs) == 1 else "auto")
    failed = 0
    with tqdm(plan.jobs, unit="image", desc="cutting out", disable=len(plan.jobs) == 1,
              dynamic_ncols=True) as bar:
        for source, target in bar:
            try:
                size = plan.run(runtime, source, target)
            except ValueError as exc:  # a bad image among many: say so, carry on
                bar.write(f"error: {source}: {exc}", file=sys.stderr)
                failed += 1
                continue
            except OSError as exc:
                bar.write(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
                failed += 1
                continue
            bar.write(f"wrote {target} ({size})")
    if failed:
        return 2 if len(plan.jobs) == 1 else 1
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
        from server.cluster.database import DatabaseUnavailable

        if isinstance(exc, (WeightsError, DatabaseUnavailable)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
