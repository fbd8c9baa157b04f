"""`abrar remove-bg`'s plan: which inputs go to which outputs with which options.

One input to a named file, or any number of files and folders into an output folder,
where outputs that exist are skipped (unless --overwrite), so a batch that was
interrupted picks up where it stopped.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from matting.cutout_options import SUFFIXES, CutoutOptions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_FORMAT_OF_SUFFIX = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}


@dataclass
class CutoutPlan:
    options: CutoutOptions
    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def run(self, runtime, source: Path, target: Path) -> str:
        """Cut out ``source`` into ``target``; returns what was written (size, mode, model).
        ValueError for an unusable input, OSError when the output cannot be written."""
        from PIL import Image

        from matting.cutout_options import cut_out_image
        from matting.images import load_image

        data, model = cut_out_image(runtime, load_image(source), self.options)
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(data)  # never a half-written file under the final name
        partial.replace(target)
        with Image.open(target) as im:
            return f"{im.width}x{im.height} {im.mode}, {model}"


def image_files(inputs: list[Path]) -> list[Path]:
    """The images named, and those directly inside the folders named, in order."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path} does not exist")
    files = list(dict.fromkeys(files))  # a file named and also inside a folder named: once
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return files


def plan_cutouts(args: argparse.Namespace) -> CutoutPlan:
    """The plan for parsed ``abrar remove-bg`` arguments; ValueError says what is wrong."""
    from matting.compositing import Background, parse_background
    from matting.images import ImageInputError, load_image

    files = image_files(args.inputs)
    output: Path = args.output
    to_folder = len(files) > 1 or any(p.is_dir() for p in args.inputs) or output.is_dir() or not output.suffix
    fmt = args.format
    if not to_folder:
        implied = _FORMAT_OF_SUFFIX.get(output.suffix.lower())
        if implied is None:
            raise ValueError(f"cannot save an image as '{output.suffix}'; use .png, .jpg or .webp")
        if fmt is None:
            fmt = implied
        elif SUFFIXES[fmt] != SUFFIXES[implied]:
            raise ValueError(f"--format {fmt} writes .{SUFFIXES[fmt]} files, but the output is {output.name}")
    if args.background_file is not None:
        if args.background != "transparent":
            raise ValueError("give --background or --background-file, not both")
        try:
            background = Background("image", image=load_image(args.background_file))
        except ImageInputError as exc:
            raise ValueError(f"background file {args.background_file}: {exc}") from None
    else:
        background = parse_background(args.background)
    options = CutoutOptions(model=args.model, format=fmt or "png", background=background,
                            foreground=args.foreground, crop=args.crop, crop_margin=args.crop_margin,
                            max_size=args.max_size)
    if not to_folder:
        if not output.parent.is_dir():
            raise ValueError(f"output folder {output.parent} does not exist")
        return CutoutPlan(options, jobs=[(files[0], output)])
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output} is a file; with several inputs -o names a folder")
    output.mkdir(parents=True, exist_ok=True)
    plan = CutoutPlan(options)
    seen: set[Path] = set()
    for source in files:
        target = output / f"{source.stem}.{options.suffix}"
        if target in seen:
            raise ValueError(f"two inputs would both be written to {target}; rename one of them")
        seen.add(target)
        if target.exists() and not args.overwrite:
            plan.skipped.append(source)
        else:
            plan.jobs.append((source, target))
    return plan
