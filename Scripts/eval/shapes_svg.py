#!/usr/bin/env python3
"""Draws a labelled evaluation set of coloured shapes as SVG documents rasterised by CairoSVG (one renderer of two;
see shapes_matplotlib.py, which shares no code or random stream with this one).

48 classes = 8 colours x 6 shapes, one folder per class named "<colour> <shape>" holding 000.png, 001.png, ...; the
caption to test a class with is "a <colour> <shape>". Each image has ONE target shape in the class colour (filled, or
sometimes a thick outline) on a background of any kind (solid, linear/radial gradient, stripe/check/dot <pattern>,
mosaic or speckle noise) whose colours all keep a minimum CIELAB distance from the target's, and sometimes a few much
smaller distractor shapes of other colours. Written without looking at the project's training-data generator.

    python Scripts/eval/shapes_svg.py OUTPUT-FOLDER [--per-class 20] [--seed 0] [--size 224]

Needs cairosvg and the system's libcairo2 (Scripts/eval/requirements-shapes.txt). Deterministic: image i of a class
depends only on (--seed, class, i). Geometry lives in a 1000 x 1000 viewBox, so --size only changes the raster.
"""
import argparse
import colorsys
import math
import pathlib
import random

import cairosvg

COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "black", "white"]
SHAPES = ["circle", "square", "triangle", "star", "heart", "cross"]
# (hue degrees, saturation, value) ranges a person would still give the name; orange stays between red and yellow
# with room either side, purple well away from blue, orange/yellow bright (darkened they read as brown/olive).
NAMED = {
    "red": ((-7, 7), (0.80, 1.0), (0.55, 0.95)), "orange": ((25, 34), (0.85, 1.0), (0.88, 1.0)),
    "yellow": ((51, 60), (0.78, 1.0), (0.86, 1.0)), "green": ((100, 140), (0.6, 1.0), (0.45, 0.9)),
    "blue": ((210, 240), (0.7, 1.0), (0.55, 0.95)), "purple": ((270, 290), (0.55, 0.9), (0.45, 0.85)),
    "black": ((0, 360), (0.0, 0.35), (0.0, 0.14)), "white": ((0, 360), (0.0, 0.07), (0.93, 1.0)),
}
MIN_DE = 40.0  # CIE76 distance every background colour (and blend) keeps from the target; distractors: 30
V = 1000.0     # viewBox side


def pick(r, name):
    (h0, h1), (s0, s1), (v0, v1) = NAMED[name]
    return colorsys.hsv_to_rgb((r.uniform(h0, h1) % 360) / 360, r.uniform(s0, s1), r.uniform(v0, v1))


def lab(c):
    lin = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
    xyz = [sum(m * v for m, v in zip(row, lin)) / w for row, w in zip(
        [(0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505)], (0.95047, 1.0, 1.08883))]
    f = [t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in xyz]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def mix(a, b, t):
    return tuple(x + t * (y - x) for x, y in zip(a, b))


def hexc(c):
    return "#%02x%02x%02x" % tuple(round(255 * min(1, max(0, x))) for x in c)


def clear_of(target, colours, minimum):
    """True when every colour and every blend of neighbouring colours keeps `minimum` from target (gradients, noise
    and anti-aliased pattern edges show the blends). CIE76 overrates chroma among dark colours (dark purple on
    black passes 40 yet is hard to see), so a pair that barely passes must also differ in lightness."""
    pairs = list(zip(colours, colours[1:])) or [(colours[0], colours[0])]
    lt = lab(target)
    for a, b in pairs:
        for k in range(9):
            c = lab(mix(a, b, k / 8))
            de = math.dist(lt, c)
            if de < minimum or (de < 1.5 * minimum and abs(lt[0] - c[0]) < 12):
                return False
    return True


def random_colour(r, avoid_name):
    u = r.random()
    if u < 0.3:  # another class's colour: exactly the confusions the set is meant to expose
        return pick(r, r.choice([n for n in COLOURS if n != avoid_name]))
    if u < 0.55:
        return colorsys.hsv_to_rgb(r.random(), r.uniform(0.55, 1), r.uniform(0.55, 1))   # saturated
    if u < 0.72:
        return colorsys.hsv_to_rgb(r.random(), r.uniform(0.1, 0.35), r.uniform(0.85, 1))  # pastel
    if u < 0.86:
        return colorsys.hsv_to_rgb(r.random(), r.uniform(0.25, 1), r.uniform(0.1, 0.4))   # dark
    g = r.uniform(0.04, 0.96)
    return (g, g, g)                                                                       # gray


def background(r, target, name):
    """(defs, body) SVG for the background, and the list of its colours."""
    kind = r.choices(["solid", "linear", "radial", "stripes", "checks", "dots", "mosaic", "speckle"],
                     [24, 17, 13, 12, 10, 10, 7, 7])[0]
    n = 1 if kind == "solid" else 3 if kind == "linear" and r.random() < 0.35 else 2
    for _ in range(1000):
        cols = [random_colour(r, name) for _ in range(n)]
        if clear_of(target, cols, MIN_DE):
            break
    else:  # practically unreachable: a gray at the far end of the lightness scale
        cols = [(0.1,) * 3 if lab(target)[0] > 50 else (0.9,) * 3] * n
    c = [hexc(x) for x in cols]
    full = f'<rect width="{V:g}" height="{V:g}" fill="{{}}"/>'
    if kind == "solid":
        return "", full.format(c[0]), cols
    if kind in ("linear", "radial"):
        stops = "".join(f'<stop offset="{k / (n - 1):g}" stop-color="{x}"/>' for k, x in enumerate(c))
        if kind == "linear":
            a = r.uniform(0, 2 * math.pi)
            x1, y1, x2, y2 = V / 2 - 520 * math.cos(a), V / 2 - 520 * math.sin(a), V / 2 + 520 * math.cos(a), \
                V / 2 + 520 * math.sin(a)
            g = f'<linearGradient id="bg" gradientUnits="userSpaceOnUse" x1="{x1:.0f}" y1="{y1:.0f}" ' \
                f'x2="{x2:.0f}" y2="{y2:.0f}">{stops}</linearGradient>'
        else:
            g = f'<radialGradient id="bg" gradientUnits="userSpaceOnUse" cx="{r.uniform(0, V):.0f}" ' \
                f'cy="{r.uniform(0, V):.0f}" r="{r.uniform(0.45, 1.1) * V:.0f}">{stops}</radialGradient>'
        return g, full.format("url(#bg)"), cols
    if kind in ("stripes", "checks", "dots"):
        p = r.uniform(35, 130)
        if kind == "stripes":
            tile = f'<rect width="{p * r.uniform(0.3, 0.7):.1f}" height="{p:.1f}" fill="{c[1]}"/>'
        elif kind == "checks":
            tile = f'<rect width="{p / 2:.1f}" height="{p / 2:.1f}" fill="{c[1]}"/>' \
                   f'<rect x="{p / 2:.1f}" y="{p / 2:.1f}" width="{p / 2:.1f}" height="{p / 2:.1f}" fill="{c[1]}"/>'
        else:
            tile = f'<circle cx="{p / 2:.1f}" cy="{p / 2:.1f}" r="{p * r.uniform(0.15, 0.33):.1f}" fill="{c[1]}"/>'
        turn = r.choice([0, 0, r.uniform(0, 180)])
        pat = f'<pattern id="bg" patternUnits="userSpaceOnUse" width="{p:.1f}" height="{p:.1f}" ' \
              f'patternTransform="rotate({turn:.1f})"><rect width="{p:.1f}" height="{p:.1f}" fill="{c[0]}"/>' \
              f'{tile}</pattern>'
        return pat, full.format("url(#bg)"), cols
    if kind == "mosaic":  # blocky noise: cells of random blends of the two colours
        cell = V / r.randint(16, 48)
        k = math.ceil(V / cell)
        body = "".join(f'<rect x="{i * cell:.1f}" y="{j * cell:.1f}" width="{cell + 0.6:.1f}" height="{cell + 0.6:.1f}"'
                       f' fill="{hexc(mix(cols[0], cols[1], r.random()))}"/>' for i in range(k) for j in range(k))
        return "", body, cols
    dots = "".join(f'<circle cx="{r.uniform(0, V):.0f}" cy="{r.uniform(0, V):.0f}" r="{r.uniform(4, 22):.0f}" '
                   f'fill-opacity="{r.uniform(0.2, 0.9):.2f}"/>' for _ in range(r.randint(250, 700)))
    return "", full.format(c[0]) + f'<g fill="{c[1]}">{dots}</g>', cols  # speckle


def outline(shape, r):
    """Points of the shape in a box about [-0.5, 0.5]^2, y down (heart: cubic Bezier points, start + 3 per curve)."""
    if shape == "triangle":
        h = math.sqrt(3) / 2
        return [(0, -h / 2), (0.5, h / 2), (-0.5, h / 2)]
    if shape == "star":  # inner/outer radius 0.38-0.46: always five clear points
        k = r.uniform(0.38, 0.46)
        return [((0.5 if i % 2 == 0 else 0.5 * k) * math.cos(-math.pi / 2 + i * math.pi / 5),
                 (0.5 if i % 2 == 0 else 0.5 * k) * math.sin(-math.pi / 2 + i * math.pi / 5)) for i in range(10)]
    if shape == "cross":  # a plus sign, arm width 28-38 % of the span
        w = r.uniform(0.14, 0.19)
        return [(-w, -0.5), (w, -0.5), (w, -w), (0.5, -w), (0.5, w), (w, w), (w, 0.5), (-w, 0.5), (-w, w), (-0.5, w),
                (-0.5, -w), (-w, -w)]
    # heart: tip at the bottom, two round lobes, a dip between them
    return [(0, 0.5), (-0.08, 0.38), (-0.5, 0.12), (-0.5, -0.17), (-0.5, -0.4), (-0.33, -0.5), (-0.24, -0.5),
            (-0.11, -0.5), (-0.02, -0.42), (0, -0.3), (0.02, -0.42), (0.11, -0.5), (0.24, -0.5), (0.33, -0.5),
            (0.5, -0.4), (0.5, -0.17), (0.5, 0.12), (0.08, 0.38), (0, 0.5)]


def shape_svg(r, shape, span, squash, angle, region, style):
    """SVG for the shape scaled to span x span/squash (viewBox units), rotated, placed at random inside `region`
    (x0, y0, x1, y1). Points are transformed here rather than with a transform= attribute so that a squash never
    makes an outline's stroke uneven. Returns (svg, bounding box)."""
    sx, sy = (span, span / squash) if r.random() < 0.5 else (span / squash, span)
    if shape == "circle":  # never rotated
        pts, angle = [(-0.5, -0.5), (0.5, 0.5)], 0
    elif shape == "square":
        pts = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    else:
        pts = outline(shape, r)
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    pts = [(x * sx * ca - y * sy * sa, x * sx * sa + y * sy * ca) for x, y in pts]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, y0, x1, y1 = region
    fit = min(1.0, (x1 - x0) / (max(xs) - min(xs)), (y1 - y0) / (max(ys) - min(ys)))  # shrink what can't fit
    tx = r.uniform(x0 - min(xs) * fit, x1 - max(xs) * fit)
    ty = r.uniform(y0 - min(ys) * fit, y1 - max(ys) * fit)
    pts = [(tx + x * fit, ty + y * fit) for x, y in pts]
    box = (tx + min(xs) * fit, ty + min(ys) * fit, tx + max(xs) * fit, ty + max(ys) * fit)
    if shape == "circle":
        return f'<ellipse cx="{tx:.1f}" cy="{ty:.1f}" rx="{sx * fit / 2:.1f}" ry="{sy * fit / 2:.1f}" {style}/>', box
    if shape == "square":
        w, h = sx * fit, sy * fit
        return f'<rect x="{tx - w / 2:.1f}" y="{ty - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" ' \
               f'transform="rotate({angle:.1f} {tx:.1f} {ty:.1f})" {style}/>', box
    flat = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    if shape == "heart":
        return f'<path d="M{flat[:flat.index(" ")]} C{flat[flat.index(" ") + 1:]} Z" {style}/>', box
    return f'<polygon points="{flat}" {style}/>', box


def image_svg(r, colour, shape):
    target = pick(r, colour)
    defs, body, bg = background(r, target, colour)
    span = r.uniform(0.25, 0.70) * V
    # Rotation limits: squares within +-40 (else a diamond), crosses +-25 (else an x), hearts +-30, others free.
    lim = {"square": 40, "cross": 25, "heart": 30}.get(shape, 180)
    if r.random() < 0.22:
        style = f'fill="none" stroke="{hexc(target)}" stroke-linejoin="round" ' \
                f'stroke-width="{max(14, span * r.uniform(0.06, 0.1)):.1f}"'
    else:
        style = f'fill="{hexc(target)}"'
    main, box = shape_svg(r, shape, span, r.uniform(1, 1.3), r.uniform(-lim, lim), (30, 30, V - 30, V - 30), style)
    extras, taken = [], [box]
    if r.random() < 0.3:  # distractors: other colour names, 15-30 % of the target's span, clear of everything
        for _ in range(r.randint(1, 4)):
            c = pick(r, r.choice([n for n in COLOURS if n != colour]))
            if not clear_of(c, bg, 30):
                continue
            for _ in range(40):
                svg, b = shape_svg(r, r.choice(SHAPES), span * r.uniform(0.15, 0.3), 1.0, r.uniform(-180, 180),
                                   (8, 8, V - 8, V - 8), f'fill="{hexc(c)}"')
                if all(b[2] + 12 < t[0] or b[0] > t[2] + 12 or b[3] + 12 < t[1] or b[1] > t[3] + 12 for t in taken):
                    extras.append(svg)
                    taken.append(b)
                    break
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {V:g} {V:g}"><defs>{defs}</defs>{body}' \
           f'{"".join(extras)}{main}</svg>'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output", type=pathlib.Path)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--keep-svg", action="store_true", help="also write NNN.svg next to each PNG")
    args = ap.parse_args()
    for colour in COLOURS:
        for shape in SHAPES:
            folder = args.output / f"{colour} {shape}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(args.per_class):
                # A string seed is hashed with SHA-512 by random.seed, so it is stable across runs and platforms.
                r = random.Random(f"shapes-svg/{args.seed}/{colour}/{shape}/{i}")
                svg = image_svg(r, colour, shape)
                if args.keep_svg:
                    (folder / f"{i:03d}.svg").write_text(svg)
                cairosvg.svg2png(bytestring=svg.encode(), write_to=str(folder / f"{i:03d}.png"),
                                 output_width=args.size, output_height=args.size)
    print(f"wrote {len(COLOURS) * len(SHAPES) * args.per_class} images to {args.output}")


if __name__ == "__main__":
    main()
