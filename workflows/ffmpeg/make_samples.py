#!/usr/bin/env python3
"""Make sample MP4 files for the ffmpeg workflow: a few seconds of test pattern and tone each.

The three in ``workflows/ffmpeg/input`` were made with this script, so the
workflow runs on a fresh clone; it makes more (up to five) or remakes them,
small and license-clean, with the local ffmpeg. Names include spaces on
purpose, because task commands must quote them.

    python3 workflows/ffmpeg/make_samples.py [--dest DIR] [--count N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

NAMES = ["sunrise clip.mp4", "harbour-2.mp4", "night walk 3.mp4", "market.mp4", "rain on glass.mp4"]


def make_sample(path: Path, seconds: int, tone_hz: int) -> None:
    """Write an H.264 + AAC MP4 of ``seconds`` with a test pattern and a sine tone."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size=160x120:rate=10:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={tone_hz}:duration={seconds}",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-ac",
            "1",
            "-b:a",
            "24k",
            "-shortest",
            str(path),
        ],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make sample MP4 files for workflows/ffmpeg.yaml.")
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(__file__).resolve().parent / "input",
        help="folder to write to (default: workflows/ffmpeg/input)",
    )
    parser.add_argument(
        "--count", type=int, default=3, choices=range(1, len(NAMES) + 1), help="how many files to make (default 3)"
    )
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("make_samples: ffmpeg is not installed (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    args.dest.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(NAMES[: args.count]):
        target = args.dest / name
        if not target.exists():
            make_sample(target, seconds=2 + index, tone_hz=440 + 110 * index)
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
