#!/usr/bin/env python3
"""Draws a labelled evaluation set of coloured shapes with matplotlib patches (one renderer of two; see shapes_svg.py).

48 classes = 8 colours x 6 shapes, one folder per class named "<colour> <shape>" holding 000.png, 001.png, ...; the
caption to test a class with is "a <colour> <shape>". Each image has ONE target shape in the class colour (filled, or
sometimes a thick outline) on a background of any kind (solid, linear/radial gradient, stripes, checks, dots, noise)
that never comes close to the target's colour, and sometimes a few much smaller distractor shapes of other colours.
Written without looking at the project's training-data generator, so the drawings are new to the model.

    python Scripts/eval/shapes_matplotlib.py OUTPUT-FOLDER [--per-class 20] [--seed 0] [--size 224]

Needs matplotlib (Scripts/eval/requirements-shapes.txt). Deterministic: image i of a class depends only on
(--seed, class, i), so a larger --per-class only adds images.
"""
import argparse
import colorsys
import pathlib

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import patches  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Affine2D  # noqa: E402
from PIL import Image  # noqa: E402  (Pillow comes with matplotlib)

COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "black", "white"]
SHAPES = ["circle", "square", "triangle", "star", "heart", "cross"]
# HSV ranges (hue in degrees, may wrap below 0) that a person would still call the name. Orange and yellow keep a
# high value because darkened they turn brown/olive; orange's hue band stays clear of red's and yellow's.
HSV = {
    "red": ((-8, 8), (0.80, 1.0), (0.55, 0.95)),
    "orange": ((24, 33), (0.85, 1.0), (0.88, 1.0)),
    "yellow": ((50, 60), (0.80, 1.0), (0.85, 1.0)),
    "green": ((100, 140), (0.65, 1.0), (0.45, 0.90)),
    "blue": ((210, 240), (0.70, 1.0), (0.55, 0.95)),
    "purple": ((270, 290), (0.60, 0.95), (0.45, 0.85)),
    "black": ((0, 360), (0.0, 0.30), (0.0, 0.14)),
    "white": ((0, 360), (0.0, 0.07), (0.93, 1.0)),
}
MIN_DIST = 200.0  # "redmean" RGB distance (0..~765) a background must keep from the target; distractors: 150


def named_rgb(rng, name):
    (h0, h1), (s0, s1), (v0, v1) = HSV[name]
    return np.array(colorsys.hsv_to_rgb((rng.uniform(h0, h1) % 360) / 360, rng.uniform(s0, s1), rng.uniform(v0, v1)))


def redmean(a, b):
    """A cheap perceptual RGB distance (weights follow the mean red level), on a 0..255 scale."""
    a, b = np.asarray(a) * 255, np.asarray(b) * 255
    r, (dr, dg, db) = (a[0] + b[0]) / 2, a - b
    return float(np.sqrt((2 + r / 256) * dr * dr + 4 * dg * dg + (2 + (255 - r) / 256) * db * db))


def far_from(c, avoid, minimum):
    """Every colour in `avoid` is `minimum` away from c; a near-miss must also differ in luma (Rec. 601), because a
    hue-only difference such as blue on violet stays hard to see even at a fair RGB distance."""
    luma = np.array([0.299, 0.587, 0.114])
    return all(redmean(c, a) >= minimum and (redmean(c, a) >= 1.4 * minimum or abs(luma @ (c - a)) >= 0.1)
               for a in avoid)


def any_rgb(rng, exclude_name):
    """A background colour of any kind: another class's colour, saturated, pastel, dark, or gray."""
    kind = rng.choice(["named", "saturated", "pastel", "dark", "gray"], p=[0.25, 0.25, 0.2, 0.15, 0.15])
    if kind == "named":
        return named_rgb(rng, rng.choice([n for n in COLOURS if n != exclude_name]))
    h = rng.uniform(0, 1)
    s, v = {"saturated": (rng.uniform(0.6, 1), rng.uniform(0.6, 1)), "pastel": (rng.uniform(0.12, 0.35),
            rng.uniform(0.85, 1)), "dark": (rng.uniform(0.3, 1), rng.uniform(0.12, 0.4)),
            "gray": (rng.uniform(0, 0.05), rng.uniform(0.05, 0.95))}[kind]
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def background_pair(rng, target, name):
    """Two background colours such that every blend between them stays far from the target (gradients, noise and
    anti-aliased pattern edges show the blends, and a blend of two far colours can pass right by the target)."""
    for _ in range(500):
        c1, c2 = any_rgb(rng, name), any_rgb(rng, name)
        if far_from(target, [c1 + t * (c2 - c1) for t in np.linspace(0, 1, 11)], MIN_DIST):
            return c1, c2
    gray = np.full(3, 0.15 if target.mean() > 0.5 else 0.85)  # unreachable in practice; keeps the image valid
    return gray, gray


def background(rng, size, c1, c2):
    """A size x size x 3 image. Patterns are computed at 2x and box-filtered down, which anti-aliases their edges."""
    kind = rng.choice(["solid", "linear", "radial", "stripes", "checks", "dots", "noise"],
                      p=[0.25, 0.18, 0.14, 0.12, 0.11, 0.1, 0.1])
    n = size * 2
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / 2  # pixel units
    a = rng.uniform(0, np.pi)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    if kind == "solid":
        t = np.zeros((n, n))
    elif kind == "linear":
        t = (u - u.min()) / (u.max() - u.min())
    elif kind == "radial":
        cx, cy = rng.uniform(0, size, 2)
        t = np.clip(np.hypot(x - cx, y - cy) / rng.uniform(0.5, 1.2) / size, 0, 1)
    elif kind == "stripes":
        p = rng.uniform(0.04, 0.14) * size
        t = ((u % p) < p * rng.uniform(0.3, 0.7)).astype(float)
    elif kind == "checks":
        p = rng.uniform(0.05, 0.15) * size
        if rng.random() < 0.5:
            u, v = x, y  # half of the boards are axis-aligned
        t = ((np.floor(u / p) + np.floor(v / p)) % 2).astype(float)
    elif kind == "dots":
        p = rng.uniform(0.06, 0.14) * size
        du, dv = (u % p) - p / 2, (v % p) - p / 2
        t = (np.hypot(du, dv) < p * rng.uniform(0.18, 0.35)).astype(float)
    else:  # noise: smooth value noise (bilinear upsampled coarse grid) plus fine per-pixel grain
        g = rng.uniform(0, 1, (rng.integers(4, 12),) * 2)
        coords = np.linspace(0, g.shape[0] - 1, n)
        rows = np.array([np.interp(coords, np.arange(g.shape[0]), r) for r in g])
        smooth = np.array([np.interp(coords, np.arange(g.shape[0]), col) for col in rows.T]).T
        t = np.clip(0.75 * smooth + 0.25 * rng.uniform(0, 1, (n, n)), 0, 1)
    img = c1 + t[..., None] * (c2 - c1)
    return img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))


def unit_patch(shape):
    """The shape in a box about [-0.5, 0.5]^2, before squash/rotation/placement."""
    if shape == "circle":
        return patches.Circle((0, 0), 0.5)
    if shape == "square":
        return patches.Rectangle((-0.5, -0.5), 1, 1)
    if shape == "triangle":
        return patches.RegularPolygon((0, 0), 3, radius=1 / np.sqrt(3))  # equilateral, side 1, a vertex up
    if shape == "star":  # five points; inner radius 0.42 of the outer keeps the points clearly pointed
        ang = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 0.5, 0.21)
        return patches.Polygon(np.c_[r * np.cos(ang), r * np.sin(ang)])
    if shape == "heart":  # the classic parametric heart, lobes up, tip down
        t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
        hx, hy = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return patches.Polygon(np.c_[hx / 34, (hy + 2.5) / 34])
    w = 0.17  # cross: a plus sign whose arms are a third of its span
    return patches.Polygon([(-w, -0.5), (w, -0.5), (w, -w), (0.5, -w), (0.5, w), (w, w), (w, 0.5), (-w, 0.5),
                            (-w, w), (-0.5, w), (-0.5, -w), (-w, -w)])


def rotation(rng, shape):
    # The circle is never rotated. Squares stay within +-35 degrees (at 45 they read as diamonds), crosses within
    # +-25 (at 45 a plus becomes an x), hearts within +-30 (an upside-down heart is a poor heart).
    limit = {"circle": 0, "square": 35, "cross": 25, "heart": 30}.get(shape, 180)
    return rng.uniform(-limit, limit)


def place(rng, shape, span, squash, angle, box):
    """A patch scaled to `span` (fraction of the side), squashed, rotated, and moved to a random spot whose bounding
    box stays inside `box` = (x0, y0, x1, y1). Returns (patch, its extents)."""
    p = unit_patch(shape)
    sx, sy = (span, span / squash) if rng.random() < 0.5 else (span / squash, span)
    aff = Affine2D().scale(sx, sy).rotate_deg(angle)
    ext = (p.get_patch_transform() + aff).transform_path(p.get_path()).get_extents()
    x0, y0, x1, y1 = box
    fit = min(1.0, (x1 - x0) / ext.width, (y1 - y0) / ext.height)  # shrink a rotated shape that would not fit
    aff = Affine2D().scale(sx * fit, sy * fit).rotate_deg(angle)
    w, h = ext.width * fit, ext.height * fit
    tx, ty = rng.uniform(x0, x1 - w) - ext.x0 * fit, rng.uniform(y0, y1 - h) - ext.y0 * fit
    aff.translate(tx, ty)
    return p, aff, (ext.x0 * fit + tx, ext.y0 * fit + ty, ext.x1 * fit + tx, ext.y1 * fit + ty)


def draw(rng, colour, shape, size):
    fig = Figure(figsize=(1, 1), dpi=size)  # 1 inch at `size` dpi: exactly size x size pixels
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    target = named_rgb(rng, colour)
    c1, c2 = background_pair(rng, target, colour)
    ax.imshow(background(rng, size, c1, c2), extent=(0, 1, 0, 1), origin="lower", interpolation="nearest")

    span = rng.uniform(0.25, 0.70)
    patch, aff, bb = place(rng, shape, span, rng.uniform(1, 1.3), rotation(rng, shape), (0.03, 0.03, 0.97, 0.97))
    outlined = rng.random() < 0.2
    pt_per_px = 72 / size
    if outlined:  # a stroke 7-11 % of the shape's span, never under 3 pixels
        patch.set(facecolor="none", edgecolor=target, joinstyle="round",
                  linewidth=max(3, rng.uniform(0.07, 0.11) * span * size) * pt_per_px)
    else:
        patch.set(facecolor=target, edgecolor="none")
    patch.set_transform(aff + ax.transData)

    extras = []
    if rng.random() < 0.3:  # distractors: other colour names, under a third of the target, off the target
        occupied = [bb]
        for _ in range(rng.integers(1, 5)):
            name = rng.choice([n for n in COLOURS if n != colour])
            c = named_rgb(rng, name)
            if not far_from(c, [c1, c2, (c1 + c2) / 2], 150):
                continue
            for _ in range(30):
                small = rng.uniform(0.25, 0.32) * span
                d, daff, dbb = place(rng, rng.choice(SHAPES), small, 1.0, rng.uniform(0, 360), (0.01, 0.01, 0.99, 0.99))
                if all(dbb[2] < o[0] - 0.01 or dbb[0] > o[2] + 0.01 or dbb[3] < o[1] - 0.01 or dbb[1] > o[3] + 0.01
                       for o in occupied):
                    d.set(facecolor=c, edgecolor="none", transform=daff + ax.transData)
                    extras.append(d)
                    occupied.append(dbb)
                    break
    for d in extras:
        ax.add_patch(d)
    ax.add_patch(patch)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output", type=pathlib.Path)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            folder = args.output / f"{colour} {shape}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(args.per_class):
                # Own stream per image; the constant tags this renderer so it never shares a stream with another.
                rng = np.random.default_rng([0x6D706C, args.seed, ci, si, i])
                pixels = draw(rng, colour, shape, args.size)
                assert pixels.shape == (args.size, args.size, 3), pixels.shape
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    print(f"wrote {len(COLOURS) * len(SHAPES) * args.per_class} images to {args.output}")


if __name__ == "__main__":
    main()
