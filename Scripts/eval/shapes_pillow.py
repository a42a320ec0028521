"""Validation renderer: labelled images of coloured shapes, drawn with Pillow + numpy.

Writes OUTPUT/<colour> <shape>/NNN.png for 8 colours x 6 shapes (48 classes); a class is
tested with the caption "a <colour> <shape>". Each image has ONE main target shape (25-70 %
of the side, random position/rotation/slight stretch, 4x supersampled; filled, thick outline
or darker thin border; sometimes shaded) in a colour sampled from HSV bands a person would name
unambiguously, on a varied background (solid, gradients, stripes, checkerboard, polka dots,
smooth noise, faint clutter) whose every pixel is >= CIE Lab dE 35 from the target colour,
plus optional small distractors of other colours and blur / noise / JPEG degradations.
Geometry and colours are written independently of the training generator.

This is the VALIDATION set, used to choose between training runs (model selection); never
train on it. Image i of a class depends only on (--seed, class, i).
Usage: python Scripts/eval/shapes_pillow.py OUTPUT [--per-class 20] [--seed 0] [--size 224]
"""
import argparse
import colorsys
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

# name -> (hue range in degrees, saturation range, value range)
COLOURS = {
    "red": ((-5, 6), (0.80, 1.0), (0.70, 1.0)),
    "green": ((100, 140), (0.65, 1.0), (0.50, 0.90)),
    "blue": ((208, 236), (0.70, 1.0), (0.55, 1.0)),
    "yellow": ((50, 60), (0.75, 1.0), (0.92, 1.0)),
    "orange": ((24, 35), (0.85, 1.0), (0.93, 1.0)),
    "purple": ((272, 290), (0.50, 0.90), (0.45, 0.85)),
    "black": ((0, 360), (0.0, 0.30), (0.0, 0.10)),
    "white": ((0, 360), (0.0, 0.05), (0.94, 1.0)),
}
SHAPES = ["circle", "square", "triangle", "star", "heart", "cross"]
# background colour families (s0, s1, v0, v1): grays, pastels, darks, anything
BG_FAMILIES = [(0, 0, 0, 1), (0.1, 0.4, 0.85, 1), (0.2, 1, 0.08, 0.4), (0.2, 1, 0.3, 1)]
BACKGROUNDS = ["solid", "linear", "radial", "stripes", "checker", "dots", "noise", "clutter"]
SS = 4          # supersampling factor for shape masks
MIN_DE = 35.0   # minimum Lab distance between any background pixel and the target colour


def hsv(h, s, v):
    return np.array(colorsys.hsv_to_rgb((h / 360.0) % 1.0, s, v)) * 255.0


def to_lab(rgb):
    """sRGB (0..255, shape [..., 3]) -> CIE Lab (D65)."""
    c = np.asarray(rgb, np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], -1)


def min_de(rgb, avoid_lab):
    lab = to_lab(np.reshape(rgb, (-1, 3)))
    return np.sqrt(((lab[:, None, :] - avoid_lab[None]) ** 2).sum(-1)).min()


def sample_hsv(rng, name):
    (h0, h1), (s0, s1), (v0, v1) = COLOURS[name]
    return rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1)


def unit_shape(rng, shape):
    """Polygon (y down, upright) and the relative width of its thinnest part."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 180, endpoint=False)
        return np.c_[np.cos(t), np.sin(t)], 1.0
    if shape == "square":
        r = rng.uniform(0.05, 0.25) if rng.random() < 0.4 else 0.0
        pts = []
        for cx, cy, a0 in [(1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)]:
            a = np.radians(a0 + np.linspace(0, 90, 10))
            pts += list(zip(cx * (1 - r) + r * np.cos(a), cy * (1 - r) + r * np.sin(a)))
        return np.array(pts), 1.0
    if shape == "triangle":
        h = np.sqrt(3) if rng.random() < 0.5 else rng.uniform(1.2, 2.6)  # apex 80..42 deg
        return np.array([(-1, h / 2), (1, h / 2), (0, -h / 2)]), 0.8
    if shape == "star":
        r_in = rng.uniform(0.38, 0.55)
        a = np.radians(-90 + 36 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, 1.0, r_in)
        return np.c_[rad * np.cos(a), rad * np.sin(a)], 0.7
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.c_[x, y] / 16.0, 1.0
    w = rng.uniform(0.17, 0.33)  # cross: arm thickness / arm span
    return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
                     (-w, w), (-1, w), (-1, -w), (-w, -w)]), 2.5 * w


def place(rng, pts, shape, size, extent):
    lo, hi = (0.9, 1.11) if shape in ("circle", "square") else (0.8, 1.25)
    r = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    pts = pts * [np.sqrt(r), 1 / np.sqrt(r)]
    ang = np.radians(rng.uniform(-35, 35) if shape in ("star", "heart") else rng.uniform(0, 360))
    pts = pts @ np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
    pts = pts - (pts.min(0) + pts.max(0)) / 2
    pts = pts * extent / (pts.max(0) - pts.min(0)).max()
    half = (pts.max(0) - pts.min(0)) / 2
    return pts + rng.uniform(half - 0.02 * size, size - half + 0.02 * size)


def masks(pts, size, band=0.0):
    """Anti-aliased coverage of the polygon, and of an inner band `band` px wide."""
    S, p = size * SS, [tuple(q) for q in pts * SS]
    full = Image.new("L", (S, S), 0)
    ImageDraw.Draw(full).polygon(p, fill=255)
    down = lambda m: np.asarray(m.resize((size, size), Image.BOX), np.float32)[..., None] / 255
    if band <= 0:
        return down(full), None
    # a stroke of half-width `band` centred on the edges (quads + round joins; Pillow's wide
    # lines leave gaps on curves); intersecting it with the polygon keeps the inner half
    ring, r, q = Image.new("L", (S, S), 0), band * SS, pts * SS
    draw = ImageDraw.Draw(ring)
    for p0, p1 in zip(q, np.roll(q, -1, 0)):
        n = np.array([p0[1] - p1[1], p1[0] - p0[0]]) * r / (np.hypot(*(p1 - p0)) + 1e-9)
        draw.polygon([tuple(p0 + n), tuple(p1 + n), tuple(p1 - n), tuple(p0 - n)], fill=255)
        draw.ellipse([p0[0] - r, p0[1] - r, p0[0] + r, p0[1] + r], fill=255)
    return down(full), down(ImageChops.multiply(ring, full))


def bg_colour(rng, avoid_lab):
    for _ in range(200):
        s0, s1, v0, v1 = BG_FAMILIES[rng.choice(4, p=[0.2, 0.2, 0.15, 0.45])]
        c = hsv(rng.uniform(0, 360), rng.uniform(s0, s1), rng.uniform(v0, v1))
        if min_de(c, avoid_lab) >= MIN_DE + 5:
            return c
    return hsv(0, 0, 0.5)


def background(rng, size, avoid_lab):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    for _ in range(30):
        col = lambda: bg_colour(rng, avoid_lab)  # noqa: E731
        a, b = col(), col()
        th = rng.uniform(0, np.pi)
        u, v = xx * np.cos(th) + yy * np.sin(th), -xx * np.sin(th) + yy * np.cos(th)
        kind, t = BACKGROUNDS[rng.integers(len(BACKGROUNDS))], np.zeros_like(xx)  # solid: t = 0
        if kind == "linear":
            t = (u - u.min()) / (u.max() - u.min())
        elif kind == "radial":
            cx, cy = rng.uniform(0, 1, 2)
            t = np.clip(np.hypot(xx - cx, yy - cy) / rng.uniform(0.5, 1.2), 0, 1)
        elif kind == "stripes":
            t = np.clip(0.5 + 4 * np.sin(2 * np.pi * u / rng.uniform(0.04, 0.2)), 0, 1)
        elif kind == "checker":
            cell = rng.uniform(0.05, 0.18)
            t = np.clip(0.5 + 8 * np.sin(np.pi * u / cell) * np.sin(np.pi * v / cell), 0, 1)
        elif kind == "dots":
            sp = rng.uniform(0.06, 0.2)
            d = np.hypot(u / sp % 1 - 0.5, v / sp % 1 - 0.5) * sp * size
            t = np.clip(rng.uniform(0.2, 0.4) * sp * size - d + 0.5, 0, 1)
        if kind == "noise":
            g = int(rng.integers(3, 8))
            grid = np.array([[col() for _ in range(g)] for _ in range(g)]).astype(np.uint8)
            bg = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), np.float64)
        elif kind == "clutter":
            im = Image.new("RGB", (size, size), tuple(int(x) for x in a))
            dr = ImageDraw.Draw(im, "RGBA")
            for _ in range(int(rng.integers(30, 90))):
                fill = tuple(int(x) for x in col()) + (int(rng.integers(35, 100)),)
                x0, y0 = rng.uniform(-0.1, 1.1, 2) * size
                x1, y1 = (x0, y0) + rng.uniform(-0.3, 0.3, 2) * size
                if rng.random() < 0.5:
                    dr.ellipse([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=fill)
                else:
                    dr.line([x0, y0, x1, y1], fill=fill, width=int(rng.integers(1, 6)))
            bg = np.asarray(im, np.float64)
        else:
            bg = a + (b - a) * t[..., None]
        if min_de(bg, avoid_lab) >= MIN_DE:  # every background pixel, not just the chosen colours
            return bg
    return np.broadcast_to(bg_colour(rng, avoid_lab), (size, size, 3)).copy()


def render(rng, colour, shape, size):
    h, s, v = sample_hsv(rng, colour)
    pts, thin = unit_shape(rng, shape)
    extent = rng.uniform(0.25, 0.70) * size
    pts = place(rng, pts, shape, size, extent)
    # lighting: ~30 % get a value gradient kept inside the colour's own value band
    v2 = v
    if rng.random() < 0.3:
        v0, v1 = COLOURS[colour][2]
        v2 = float(np.clip(v * (1 + rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)), v0, v1))
    unit = hsv(h, s, 1.0)
    avoid = to_lab(np.array([unit * v, unit * v2]))
    img = background(rng, size, avoid)
    # distractors: smaller shapes of other named colours, placed off the target
    tmask, _ = masks(pts, size)
    taken = tmask.copy()
    if rng.random() < 0.35:
        others = [c for c in COLOURS if c != colour]
        for _ in range(int(rng.integers(1, 5))):
            dshape = SHAPES[rng.integers(len(SHAPES))]
            dcol = hsv(*sample_hsv(rng, others[rng.integers(len(others))]))
            dext = max(0.05 * size, rng.uniform(0.15, 0.4) * extent)
            for _try in range(20):
                dm, _ = masks(place(rng, unit_shape(rng, dshape)[0], dshape, size, dext), size)
                if (dm * taken).sum() < 0.08 * dm.sum():
                    img = img + dm * (dcol - img)
                    taken = np.maximum(taken, dm)
                    break
    # target: filled (65 %), thick outline (20 %) or filled with a darker thin border (15 %)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    th = rng.uniform(0, 2 * np.pi)
    proj = (xx - pts[:, 0].mean()) * np.cos(th) + (yy - pts[:, 1].mean()) * np.sin(th)
    t = np.clip(proj / extent + 0.5, 0, 1)[..., None]
    field = unit * (v + (v2 - v) * t)
    style = rng.random()
    if style < 0.20:
        band = max(3.0 * size / 224, extent * thin * rng.uniform(0.06, 0.15))
        _, ring = masks(pts, size, band=band)
        img = img + ring * (field - img)
    elif style < 0.35:
        full, ring = masks(pts, size, band=max(1.0, extent * rng.uniform(0.02, 0.035)))
        img = img + full * (field * 0.55 - img)
        img = img + (full - ring) * (field - img)
    else:
        img = img + tmask * (field - img)
    # degradations, each independently
    im = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))
    if rng.random() < 0.25:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * size / 224))
    if rng.random() < 0.25:
        arr = np.asarray(im, np.float64) + rng.normal(0, rng.uniform(3, 12), (size, size, 3))
        im = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    if rng.random() < 0.25:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(30, 86)))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return im


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    start, n = time.time(), 0
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            folder = Path(args.output) / f"{colour} {shape}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(args.per_class):
                rng = np.random.default_rng([args.seed, ci, si, i])
                render(rng, colour, shape, args.size).save(folder / f"{i:03d}.png")
                n += 1
    print(f"wrote {n} images ({len(COLOURS) * len(SHAPES)} classes x {args.per_class}, "
          f"{args.size}px, seed {args.seed}) to {args.output} in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
