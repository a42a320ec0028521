#!/usr/bin/env python3
"""Shapes drawn by another renderer (Pillow's ImageDraw) to test that the default model recognises shapes it was not
trained on pixel-for-pixel: every colour x shape class, filled or outlined, anti-aliased (4x supersampled) or not,
on plain, noisy or gradient backgrounds, in sizes and aspect ratios unlike the training images (the preprocessing
resizes and centre-crops them).

    python Scripts/make_external_shapes.py OUTPUT-FOLDER [--per-class 10] [--seed 0]

writes OUTPUT-FOLDER/<colour> <shape>/NNN.png, the layout `clip eval --images` reads. Also writes Examples/*.png
(the README's example images) with --examples.
"""
import argparse
import math
import os
import random

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (40, 170, 50), "blue": (35, 70, 220), "yellow": (240, 220, 30),
           "orange": (245, 140, 20), "purple": (140, 50, 180), "black": (15, 15, 15), "white": (245, 245, 245)}
SHAPES = ["circle", "square", "triangle", "star", "heart", "cross"]


def polygon(shape, cx, cy, r, rot):
    def rotate(points):
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]
    if shape == "square":
        return rotate([(-r * .8, -r * .8), (r * .8, -r * .8), (r * .8, r * .8), (-r * .8, r * .8)])
    if shape == "triangle":
        return rotate([(0, -r), (r * .92, r * .75), (-r * .92, r * .75)])
    if shape == "star":
        return rotate([((r if k % 2 == 0 else r * .42) * math.cos(-math.pi / 2 + k * math.pi / 5),
                        (r if k % 2 == 0 else r * .42) * math.sin(-math.pi / 2 + k * math.pi / 5)) for k in range(10)])
    if shape == "cross":
        a, b = r * .3, r * .9
        return rotate([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
                       (-a, -a)])
    if shape == "heart":
        pts = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x / 17 * r, (y + 2) / 17 * r))
        return rotate(pts)
    return None


def draw(colour, shape, size, rng, count=1):
    w, h = size
    ss = 4 if rng.random() < 0.6 else 1
    bg_kind = rng.choice(["plain", "noise", "gradient"])
    background = rng.choice([(255, 255, 255), (0, 0, 0), (128, 128, 128), (230, 215, 190)])
    if colour == "white" and background in [(255, 255, 255), (230, 215, 190)]:
        background = (60, 60, 60)
    if colour == "black" and background == (0, 0, 0):
        background = (255, 255, 255)
    img = Image.new("RGB", (w * ss, h * ss), background)
    px = img.load()
    if bg_kind != "plain":
        for y in range(0, h * ss, ss):
            for x in range(0, w * ss, ss):
                if bg_kind == "noise":
                    v = tuple(min(255, max(0, c + rng.randint(-40, 40))) for c in background)
                else:
                    v = tuple(int(c * (0.7 + 0.3 * x / (w * ss))) for c in background)
                for dy in range(ss):
                    for dx in range(ss):
                        px[x + dx, y + dy] = v
    d = ImageDraw.Draw(img)
    outlined = rng.random() < 0.25
    side = min(w, h) * ss
    for _ in range(count):
        r = side * rng.uniform(0.18, 0.3)
        cx, cy = w * ss / 2 + rng.uniform(-0.15, 0.15) * side, h * ss / 2 + rng.uniform(-0.15, 0.15) * side
        rot = rng.uniform(-0.3, 0.3)
        width = max(1, int(r * 0.22))
        fill, outline = (None, COLOURS[colour]) if outlined else (COLOURS[colour], None)
        if shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)
        else:
            pts = polygon(shape, cx, cy, r, rot)
            if outlined:
                d.line(pts + [pts[0]], fill=outline, width=width, joint="curve")
            else:
                d.polygon(pts, fill=fill)
    return img.resize((w, h), Image.LANCZOS) if ss > 1 else img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", action="store_true", help="also write Examples/*.png for the README")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for colour in COLOURS:
        for shape in SHAPES:
            folder = os.path.join(a.output, f"{colour} {shape}")
            os.makedirs(folder, exist_ok=True)
            for i in range(a.per_class):
                size = rng.choice([(64, 64), (96, 96), (128, 96), (80, 120), (200, 200)])
                draw(colour, shape, size, rng).save(os.path.join(folder, f"{i:03d}.png"))
    if a.examples:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Examples")
        os.makedirs(root, exist_ok=True)
        for name, colour, shape in [("blue-star", "blue", "star"), ("red-heart", "red", "heart")]:
            draw(colour, shape, (256, 256), random.Random(name)).save(os.path.join(root, f"{name}.png"))


if __name__ == "__main__":
    main()
