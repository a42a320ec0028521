#!/usr/bin/env python3
"""Writes Tests/CLIPImageTests/Fixtures/video: short videos with three scenes (red 0–2 s, SMPTE bars 2–4.5 s, blue
4.5–6 s; 64×48, 10 frames a second) in the containers and codecs a photo library holds, one recorded rotated (a
phone held upright: a display matrix of 90°), one an hour long, and what FFmpeg's own CLI decodes:

- NAME                      the videos: scenes.mp4 (H.264), scenes.webm (VP9), scenes.mkv (MPEG-4 part 2),
                            rotated.mov (H.264, a 90° display matrix), hour.mp4 (an hour of 32×24 at 1 frame a second, moving),
                            keyframes.mp4 (10 s of 64×48 at 30 frames a second, moving, B-frames, a key frame every
                            second: what a phone records, sampled at its key frames alone)
- reference.safetensors     NAME/TIME: U8 [h, w, 3], the frame at TIME seconds as `ffmpeg -i NAME -f rawvideo
                            -pix_fmt rgb24` gives it (rotation applied, as the CLI applies it), for the times a
                            2-second interval with scene detection samples; keyframes.mp4/TIME for 0, 2, 4, 6, 8

    apt-get install ffmpeg && python3 -m venv /tmp/venv-pil && /tmp/venv-pil/bin/pip install numpy safetensors
    /tmp/venv-pil/bin/python Scripts/make_video_fixtures.py

Made with Debian's ffmpeg 5.1 (the same libavcodec the tests decode with).
"""
import os
import struct
import subprocess

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CLIPImageTests", "Fixtures", "video")
SCENES = ("color=c=red:s=64x48:r=10:d=2[a];smptebars=s=64x48:r=10:d=2.5[b];color=c=blue:s=64x48:r=10:d=1.5[c];"
          "[a][b][c]concat=n=3:v=1:a=0,format=yuv420p")
# The frames a 2 s interval with scene detection keeps: the first, 2.0 (due, and a cut), 4.0 (due), 4.5 (a cut).
SAMPLED = (0.0, 2.0, 4.0, 4.5)


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def rotate_90(path):
    """Writes the display matrix a phone held upright writes (90° clockwise) into the track header (FFmpeg 5.1's
    muxer no longer takes a rotate tag)."""
    data = bytearray(open(path, "rb").read())
    at = data.index(b"tkhd") + 4
    assert data[at] == 0, "version-0 tkhd expected"
    matrix = at + 4 + 20 + 16
    struct.pack_into(">9i", data, matrix, 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    open(path, "wb").write(data)


def frames(path, w, h, count=60):
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], check=True, capture_output=True).stdout
    assert len(raw) % (w * h * 3) == 0, f"{path}: not {w}x{h} frames"
    a = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    assert len(a) == count, f"{path}: {len(a)} frames"
    return a


def main():
    os.makedirs(OUT, exist_ok=True)
    p = lambda name: os.path.join(OUT, name)
    ffmpeg("-filter_complex", SCENES, "-c:v", "libx264", "-preset", "veryslow", "-crf", "20", "-g", "30",
           "-movflags", "+faststart", p("scenes.mp4"))
    ffmpeg("-filter_complex", SCENES, "-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", p("scenes.webm"))
    ffmpeg("-filter_complex", SCENES, "-c:v", "mpeg4", "-q:v", "3", p("scenes.mkv"))
    ffmpeg("-filter_complex", SCENES, "-c:v", "libx264", "-crf", "20", p("rotated.mov"))
    rotate_90(p("rotated.mov"))
    # An hour at one frame a second: a slowly moving pattern (no cuts), for memory that stays flat.
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=32x24:r=1:d=3600", "-c:v", "libx264", "-preset", "veryslow", "-crf", "35",
           "-g", "600", "-pix_fmt", "yuv420p", p("hour.mp4"))
    # A phone's kind of stream: many frames a second, a key frame every second, B-frames between.
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=30:d=10", "-c:v", "libx264", "-preset", "medium", "-crf", "20",
           "-g", "30", "-bf", "2", "-pix_fmt", "yuv420p", "-movflags", "+faststart", p("keyframes.mp4"))
    tensors = {}
    key = frames(p("keyframes.mp4"), 64, 48, count=300)
    for t in (0, 2, 4, 6, 8):
        tensors[f"keyframes.mp4/{t:.1f}"] = np.ascontiguousarray(key[t * 30])
    for name, (w, h) in (("scenes.mp4", (64, 48)), ("scenes.webm", (64, 48)), ("scenes.mkv", (64, 48)),
                         ("rotated.mov", (48, 64))):
        all_frames = frames(p(name), w, h)
        for t in SAMPLED:
            tensors[f"{name}/{t:.1f}"] = np.ascontiguousarray(all_frames[int(round(t * 10))])
    save_file(tensors, p("reference.safetensors"))
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(p(name)))


if __name__ == "__main__":
    main()
