#!/usr/bin/env python3
"""Hostile inputs for the `clip` command: one generator per class of problem found by fuzzing (issue 12), written
into DIR with a manifest that the gated test `HostileInputTests` (CLIPCommandTests) runs against a built `clip`,
asserting the exit code, one stderr line naming the file and the problem, the wall time and the peak memory.

    python3 Scripts/fuzz/make_hostile_cases.py DIR [--seed-index INDEX]   # numpy and Pillow (the image cases);
                                       # INDEX: a real index (clip index Examples) to mutate
    CLIP_HOSTILE_CASES=DIR CLIP_BINARY=.build/release/clip swift test --filter HostileInput

Every case is deterministic. Checkpoints are written by hand (pickle opcodes and zip records), from the tensors of
the small ViT fixture, so no PyTorch is needed. Arguments that are not valid UTF-8 are stored as "b64:<base64>".
"""
import base64
import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_VIT = os.path.join(ROOT, "Tests/CLIPTests/Fixtures/vit_small.safetensors")
SMALL_RN = os.path.join(ROOT, "Tests/CLIPTests/Fixtures/rn_small.safetensors")
# A small model with the full 49,408-token vocabulary, for cases that tokenize text.
TINY_VIT = os.path.join(ROOT, "Tests/CLIPTests/Fixtures/pipeline/tiny_vit.safetensors")
PHOTO = os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/images/jpeg_420_photo.jpg")


# --- safetensors ------------------------------------------------------------------------------------------------

def read_safetensors(path):
    """{name: (dtype, shape, bytes)} in stored order."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, v in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                          key=lambda kv: kv[1]["data_offsets"][0]):
        s, e = v["data_offsets"]
        out[name] = (v["dtype"], v["shape"], data[8 + n + s:8 + n + e])
    return out


def write_safetensors(path, tensors, raw_header=None):
    """tensors: {name: (dtype, shape, bytes)}; raw_header replaces the computed JSON header when given."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def with_tensor(tensors, name, dtype, shape, blob):
    out = dict(tensors)
    out[name] = (dtype, shape, blob)
    return out


# --- pickles (protocol 2) and zip archives, as torch.save writes them -------------------------------------------

PROTO, MARK, TUPLE, EMPTY_TUPLE = b"\x80\x02", b"(", b"t", b")"
EMPTY_DICT, EMPTY_LIST, SETITEMS, REDUCE = b"}", b"]", b"u", b"R"
BINPERSID, NEWFALSE, STOP, NONE = b"Q", b"\x89", b".", b"N"
LIST, DICT, BUILD, NEWOBJ = b"l", b"d", b"b", b"\x81"


def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -2 ** 31 <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_binput(i):
    return b"r" + struct.pack("<I", i)


def p_binget(i):
    return b"j" + struct.pack("<I", i)


STORAGE_TYPES = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage", "I64": "LongStorage"}
DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def p_tensor(key, dtype, count, offset, shape, stride):
    storage = (MARK + p_str("storage") + p_global("torch", STORAGE_TYPES[dtype]) + p_str(key) + p_str("cpu")
               + p_int(count) + TUPLE + BINPERSID)
    return (p_global("torch._utils", "_rebuild_tensor_v2") + MARK + storage + p_int(offset)
            + MARK + b"".join(p_int(s) for s in shape) + TUPLE + MARK + b"".join(p_int(s) for s in stride) + TUPLE
            + NEWFALSE + p_global("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE + REDUCE)


def contiguous_strides(shape):
    strides, acc = [], 1
    for n in reversed(shape):
        strides.insert(0, acc)
        acc *= n
    return strides


def p_state_dict(items):
    """items: [(name, pickled value bytes)] → an OrderedDict pickle."""
    out = PROTO + p_global("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + MARK
    for name, value in items:
        out += p_str(name) + value
    return out + SETITEMS + STOP


def zip_archive(entries, zip64_extra_offset=None, zip64_locator_offset=None):
    """entries: [(name, data, deflate_declared_size or None, payload or None[, crc])]. Stored unless a payload is
    given; the CRC is computed from `data` unless given (for payloads too large to hold inflated)."""
    def le16(v): return struct.pack("<H", v)
    def le32(v): return struct.pack("<I", v)
    out, central = b"", b""
    for entry in entries:
        name, data, declared, payload = entry[:4]
        nb = name.encode()
        body = payload if payload is not None else data
        usize = declared if declared is not None else len(data)
        method = 8 if payload is not None else 0
        crc = entry[4] if len(entry) > 4 else zlib.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        out += (le32(0x04034B50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(crc)
                + le32(min(len(body), 0xFFFFFFFF)) + le32(min(usize, 0xFFFFFFFF)) + le16(len(nb)) + le16(0) + nb + body)
        extra = b""
        csize_field, usize_field, offset_field = len(body), usize, offset
        if usize > 0xFFFFFFFF or (zip64_extra_offset is not None and name.endswith("data.pkl")):
            fields = b""
            if usize > 0xFFFFFFFF:
                usize_field = 0xFFFFFFFF
                fields += struct.pack("<Q", usize)
            if zip64_extra_offset is not None and name.endswith("data.pkl"):
                offset_field = 0xFFFFFFFF
                fields += struct.pack("<Q", zip64_extra_offset)
            extra = le16(1) + le16(len(fields)) + fields
        central += (le32(0x02014B50) + le16(45) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(crc)
                    + le32(csize_field) + le32(usize_field) + le16(len(nb)) + le16(len(extra)) + le16(0) + le16(0)
                    + le16(0) + le32(0) + le32(offset_field) + nb + extra)
    cd_offset = len(out)
    out += central
    count = len(entries)
    if zip64_locator_offset is not None:
        # A zip64 locator pointing far past the file; the EOCD fields are saturated so it is consulted.
        out += le32(0x07064B50) + le32(0) + struct.pack("<Q", zip64_locator_offset) + le32(1)
        out += le32(0x06054B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFFFFFF) + le32(0xFFFFFFFF) + le16(0)
    else:
        out += (le32(0x06054B50) + le16(0) + le16(0) + le16(count) + le16(count) + le32(len(central))
                + le32(cd_offset) + le16(0))
    return out


def checkpoint(tensors, overrides=None, extra_items=(), deflate=(), zip64_extra_offset=None,
               zip64_locator_offset=None, pickle=None, storages=None):
    """A torch.save zip of `tensors` ({name: (dtype, shape, bytes)}), one storage per tensor unless `overrides`
    gives a tensor's pickled value directly. `deflate` names entries to store deflated."""
    overrides = overrides or {}
    items, entries = [], []
    for i, (name, (dtype, shape, blob)) in enumerate(tensors.items()):
        if name in overrides:
            items.append((name, overrides[name]))
            continue
        count = len(blob) // DTYPE_SIZE[dtype]
        items.append((name, p_tensor(str(i), dtype, count, 0, shape, contiguous_strides(shape))))
        entries.append((f"archive/data/{i}", blob))
    items += list(extra_items)
    pkl = pickle if pickle is not None else p_state_dict(items)
    all_entries = [("archive/data.pkl", pkl)] + entries + list((storages or {}).items())
    zipped = []
    for name, data in all_entries:
        if name in deflate:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            zipped.append((name, data, None, c.compress(data) + c.flush()))
        else:
            zipped.append((name, data, None, None))
    return zip_archive(zipped, zip64_extra_offset, zip64_locator_offset)


def deflated_zeros(size):
    """Raw deflate of `size` zero bytes, compressed in chunks (never holding `size` bytes)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, out, left = bytes(64 << 20), [], size
    while left:
        n = min(left, len(chunk))
        out.append(c.compress(chunk[:n]))
        left -= n
    out.append(c.flush())
    return b"".join(out), zlib.crc32(b"")  # the CRC is not the point of these cases


def crc_of_zeros(size):
    crc, chunk, left = 0, bytes(64 << 20), size
    while left:
        n = min(left, len(chunk))
        crc = zlib.crc32(chunk[:n], crc)
        left -= n
    return crc & 0xFFFFFFFF


# --- images ---------------------------------------------------------------------------------------------------------

def progressive_jpeg_with_repeated_scan(path, side, repeats):
    from PIL import Image
    img = Image.new("L", (side, side), 128)
    tmp = path + ".tmp.jpg"
    img.save(tmp, "JPEG", quality=50, progressive=True)
    data = open(tmp, "rb").read()
    os.remove(tmp)
    # Find the last SOS segment and its entropy-coded data (up to the EOI marker), then repeat it.
    last_sos = data.rfind(b"\xff\xda")
    eoi = data.rfind(b"\xff\xd9")
    scan = data[last_sos:eoi]
    with open(path, "wb") as f:
        f.write(data[:eoi] + scan * repeats + data[eoi:])


# --- the cases ------------------------------------------------------------------------------------------------------

def main():
    args = sys.argv[1:]
    seed_index = None
    if len(args) == 3 and args[1] == "--seed-index":
        seed_index = os.path.abspath(args[2])
        args = args[:1]
    if len(args) != 1:
        print(__doc__)
        sys.exit(64)
    out = os.path.abspath(args[0])
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cases = []
    base = read_safetensors(SMALL_VIT)

    def case(name, args, expect, seconds=5, rss_mib=1024, exit_code=1, unchanged=(), exits=None):
        """`unchanged`: files that must be byte for byte the same after the run; `exits`: the exit codes allowed
        when more than one is right (a mutated database may still be readable)."""
        cases.append({"name": name, "args": args, "exit": exit_code, "stderr": expect, "seconds": seconds,
                      "rss_mib": rss_mib, "unchanged": list(unchanged), "exits": exits or [exit_code]})

    def path(name):
        return os.path.join(out, name)

    # Safetensors shapes whose element count is zero but whose dimensions do not fit a signed integer.
    write_safetensors(path("st_huge_dim.safetensors"), with_tensor(base, "extra", "F32", [0, 2 ** 64 - 1], b""))
    case("safetensors shape [0, 2^64-1]", ["info", path("st_huge_dim.safetensors")], "st_huge_dim.safetensors")

    # Deeply nested pickle values inside an otherwise valid state dict.
    depth = 40000
    nested = {
        "tuples": NONE + b"\x85" * depth,                               # TUPLE1 again and again: ((((None,),),),…)
        "lists": MARK * depth + LIST * depth,                           # [[[[…]]]]
        "dicts": (MARK + p_str("k")) * depth + NONE + DICT * depth,     # {"k": {"k": … None}}
    }
    for kind, value in nested.items():
        blob = checkpoint(base, extra_items=[("deep", value)])
        open(path(f"deep_{kind}.pt"), "wb").write(blob)
        case(f"pickle with {depth} nested {kind}", ["info", path(f"deep_{kind}.pt")], f"deep_{kind}.pt")

    # zip64 extra field and zip64 locator pointing at 2^63-1.
    open(path("zip64_extra.pt"), "wb").write(checkpoint(base, zip64_extra_offset=2 ** 63 - 1))
    case("zip64 extra field offset 2^63-1", ["info", path("zip64_extra.pt")], "zip64_extra.pt")
    open(path("zip64_locator.pt"), "wb").write(checkpoint(base, zip64_locator_offset=2 ** 63 - 1))
    case("zip64 locator at 2^63-1", ["info", path("zip64_locator.pt")], "zip64_locator.pt")

    # Stride-0 views of huge shapes over a one-element storage.
    one = {"huge": b"\x00\x00\x80\x3f"}
    resnet = read_safetensors(SMALL_RN)
    for label, name, shape in [
        # "input_resolution" is a TorchScript extra the loader ignores, so only parameter counting meets it.
        ("stride-0 view of 2^31 x 2^31 elements (parameter counting)", "input_resolution", [2 ** 31, 2 ** 31]),
        ("positional embedding of 2^63-1 rows", "visual.positional_embedding", [2 ** 63 - 1, 128]),
        ("ResNet width 2^62", "visual.layer1.0.conv1.weight", [2 ** 62, 64, 1, 1]),
        ("patch size 2^31", "visual.conv1.weight", [128, 3, 2 ** 31, 2 ** 31]),
    ]:
        t = dict(resnet if name.startswith("visual.layer1") else base)
        if name not in t:
            t[name] = ("F32", shape, b"")
        override = p_tensor("huge", "F32", 1, 0, shape, [0] * len(shape))
        fname = "stride0_" + name.replace(".", "_") + ".pt"
        open(path(fname), "wb").write(checkpoint(t, overrides={name: override}, storages={"archive/data/huge": one["huge"]}))
        case(label, ["info", path(fname)], fname)

    # A stride-(0, 1) token embedding of 10M x 64 over a 64-element storage (materialises gigabytes).
    t = dict(base)
    emb_width = base["token_embedding.weight"][1][1]
    override = p_tensor("wide", "F32", emb_width, 0, [10_000_000, emb_width], [0, 1])
    open(path("stride0_embedding.pt"), "wb").write(checkpoint(
        t, overrides={"token_embedding.weight": override}, storages={"archive/data/wide": bytes(4 * emb_width)}))
    case("stride-(0,1) 10M-row token embedding over 64 elements", ["info", path("stride0_embedding.pt")],
         "stride0_embedding.pt")

    # open_clip config with head_width 0.
    json.dump({"embed_dim": 48, "vision_cfg": {"head_width": 0}, "text_cfg": {}}, open(path("head_width_0.json"), "w"))
    case("open_clip vision_cfg.head_width 0", ["info", SMALL_VIT, "--openclip-config", path("head_width_0.json")],
         "head_width_0.json")

    # Hugging Face folders: q/k/v weights of shape [], and absurd image sizes.
    hf = os.path.join(ROOT, "Tests/CLIPTests/Fixtures/formats/hf_vit_hd32")
    hf_tensors = read_safetensors(os.path.join(hf, "model.safetensors"))
    config = json.load(open(os.path.join(hf, "config.json")))
    scalar = dict(hf_tensors)
    for k in list(scalar):
        if ".self_attn.q_proj.weight" in k or ".self_attn.k_proj.weight" in k or ".self_attn.v_proj.weight" in k:
            scalar[k] = ("F32", [], b"\x00\x00\x80\x3f")
    os.makedirs(path("hf_scalar_qkv"))
    write_safetensors(path("hf_scalar_qkv/model.safetensors"), scalar)
    json.dump(config, open(path("hf_scalar_qkv/config.json"), "w"))
    case("Hugging Face q/k/v weights of shape []", ["info", path("hf_scalar_qkv")], "hf_scalar_qkv")
    for size in [3_000_000_000, 10 ** 12, 100_000, 10 ** 9, 16384]:
        folder = path(f"hf_image_size_{size}")
        shutil.copytree(hf, folder)
        os.remove(os.path.join(folder, "preprocessor_config.json"))  # its crop_size would decide otherwise
        c = dict(config)
        c["vision_config"] = dict(config["vision_config"], image_size=size)
        json.dump(c, open(os.path.join(folder, "config.json"), "w"))
        args = ["embed", "--model", folder] + sum((["--image", PHOTO] for _ in range(8)), [])
        case(f"Hugging Face image_size {size} with 8 images", args, f"hf_image_size_{size}")
    folder = path("hf_crop_size_huge")
    shutil.copytree(hf, folder)
    json.dump({"crop_size": {"height": 3_000_000_000, "width": 3_000_000_000}, "resample": 3,
               "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
              open(os.path.join(folder, "preprocessor_config.json"), "w"))
    case("Hugging Face crop_size 3e9", ["embed", "--model", folder, "--image", PHOTO], "hf_crop_size_huge")
    json.dump({"embed_dim": 48, "quick_gelu": True, "vision_cfg": {"image_size": 1_000_000_000_000}},
              open(path("openclip_image_size.json"), "w"))
    case("open_clip image_size 1e12", ["embed", "--model", SMALL_VIT, "--openclip-config",
                                       path("openclip_image_size.json"), "--image", PHOTO], "openclip_image_size.json")

    # Arguments.
    for n in ["9223372036854775807", "1000000000"]:
        case(f"tokenize --context-length {n}", ["tokenize", "--context-length", n, "hello"], "--context-length")
        case(f"bench --batch {n}", ["bench", "--batch", n, "--images-only"], "--batch")

    # A TorchScript-like module tree shaped as a DAG: 62 modules each holding the next twice.
    pkl = PROTO
    # Build from the innermost module outwards: object i has state {"a": obj(i+1), "b": obj(i+1)} (memo shared).
    pkl += p_global("__torch__.M", "M62") + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT + BUILD + p_binput(62)
    for i in range(61, -1, -1):
        pkl += (b"0" + p_global("__torch__.M", f"M{i}") + EMPTY_TUPLE + NEWOBJ + MARK + p_str("a") + p_binget(i + 1)
                + p_str("b") + p_binget(i + 1) + DICT + BUILD + p_binput(i))  # "0": POP the previous module
    pkl += STOP
    open(path("dag.pt"), "wb").write(zip_archive([("archive/data.pkl", pkl, None, None)]))
    case("TorchScript module DAG of 62 levels", ["info", path("dag.pt")], "dag.pt")

    # A deflated data.pkl declaring 4,000,000,000 bytes.
    payload, _ = deflated_zeros(4_000_000_000)
    blob = zip_archive([("archive/data.pkl", b"", 4_000_000_000, payload, crc_of_zeros(4_000_000_000))])
    open(path("pkl_bomb.pt"), "wb").write(blob)
    case("deflated data.pkl declaring 4e9 bytes", ["info", path("pkl_bomb.pt")], "pkl_bomb.pt")

    # 38 tensors viewing one shared deflated 1 GiB storage.
    gib = 1 << 30
    payload, _ = deflated_zeros(gib)
    items = [(f"view{i}", p_tensor("shared", "F32", gib // 4, 0, [gib // 4], [1])) for i in range(38)]
    blob = zip_archive([("archive/data.pkl", p_state_dict(items), None, None),
                        ("archive/data/shared", b"", gib, payload, crc_of_zeros(gib))])
    open(path("shared_deflated.pt"), "wb").write(blob)
    case("38 tensors over one deflated 1 GiB storage", ["info", path("shared_deflated.pt")], "shared_deflated.pt")

    # A progressive 12000 x 12000 JPEG with its last scan repeated 1,000 times.
    progressive_jpeg_with_repeated_scan(path("scans.jpg"), 12000, 1000)
    case("progressive JPEG with 1,000 repeated scans", ["preprocess", "--output", path("scans.npy"), path("scans.jpg")],
         "scans.jpg")

    # HEIC (libheif) and AVIF (libavif): a size past any limit in the image's ispe box, a file cut in half, a box
    # whose size field claims 4 GiB.
    heif_dir = os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/heif")
    for source in ("heic_rgb.heic", "avif_rgb.avif"):
        data = open(os.path.join(heif_dir, source), "rb").read()
        stem, ext = source.split(".")
        i = data.index(b"ispe")
        # Every ispe (the image's, its tiles', a thumbnail's) claims 65535 x 65535.
        bomb = data
        j = bomb.find(b"ispe")
        while j >= 0:
            bomb = bomb[:j + 8] + struct.pack(">II", 65535, 65535) + bomb[j + 16:]
            j = bomb.find(b"ispe", j + 4)
        variants = {"bomb": bomb, "truncated": data[:len(data) // 2],
                    "box4g": data[:i - 4] + struct.pack(">I", 0xFFFFFFFF) + data[i:]}
        for kind, blob in variants.items():
            fname = f"{stem}_{kind}.{ext}"
            with open(path(fname), "wb") as f:
                f.write(blob)
            case(f"{ext.upper()} {kind}", ["preprocess", "--output", path(fname + ".npy"), path(fname)], fname)

    # GIF (giflib), BMP (bmp.c), TIFF (libtiff): sizes past the limit, data that ends early, a million frames or
    # pages where one is read, a strip that claims 4 GiB, an IFD that points at itself, an RLE stream for a large
    # image that ends at once.
    formats = os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/formats")
    gif = open(os.path.join(formats, "gif_p.gif"), "rb").read()
    bmp = open(os.path.join(formats, "bmp_rle8.bmp"), "rb").read()
    tif = open(os.path.join(formats, "tiff_rgb.tif"), "rb").read()
    def gif_screen(w, h):
        return gif[:6] + struct.pack("<HH", w, h) + gif[10:]
    at = gif.index(b"\x2c", 13 + (3 << ((gif[10] & 7) + 1)))
    # The first image, then 1,000,000 more (each a 1×1 frame of 4 bytes of LZW data).
    one = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00\x02\x02\x44\x01\x00"
    many_frames = gif[:-1] + one * 1_000_000 + b"\x3b"
    # 200,000 comment extensions before the image.
    many_ext = gif[:at] + b"\x21\xfe\x01x\x00" * 200_000 + gif[at:]
    bmp_bomb = bmp[:18] + struct.pack("<ii", 2 ** 31 - 1, 100) + bmp[26:]
    # 10,000 × 10,000 declared (under the limit), the RLE data ends after one row.
    bmp_short = bmp[:18] + struct.pack("<ii", 10_000, 10_000) + bmp[26:]
    bmp_palette = bmp[:46] + struct.pack("<I", 0xFFFFFFFF) + bmp[50:]
    def tiff_tag(data, tag, value):
        """Rewrites a SHORT or LONG tag of the first IFD in place (little-endian files)."""
        d = bytearray(data)
        ifd = struct.unpack_from("<I", d, 4)[0]
        n = struct.unpack_from("<H", d, ifd)[0]
        for i in range(n):
            e = ifd + 2 + 12 * i
            t, typ, count = struct.unpack_from("<HHI", d, e)
            if t == tag:
                if typ == 3 and count == 1:
                    struct.pack_into("<H", d, e + 8, value)
                elif typ == 4 and count == 1:
                    struct.pack_into("<I", d, e + 8, value)
                else:  # several values: the first one, wherever it is
                    where = e + 8 if count * (2 if typ == 3 else 4) <= 4 else struct.unpack_from("<I", d, e + 8)[0]
                    struct.pack_into("<H" if typ == 3 else "<I", d, where, value)
                return bytes(d)
        raise KeyError(tag)
    tif_bomb = tiff_tag(tiff_tag(tif, 256, 65535), 257, 65535)
    # LZW-compressed, so libtiff would read the strip whole: it is refused, not read to the end of the file.
    tif_strip = tiff_tag(open(os.path.join(formats, "tiff_rgb_lzw.tif"), "rb").read(), 279, 0xFFFFFFFF)
    ifd_at = struct.unpack_from("<I", tif, 4)[0]
    n = struct.unpack_from("<H", tif, ifd_at)[0]
    tif_loop = bytearray(tif)
    struct.pack_into("<I", tif_loop, ifd_at + 2 + 12 * n, ifd_at)  # the next IFD is this one
    def tiff_le(entries, data_at_end=b""):
        """A little-endian TIFF of one IFD (tag, type, values) followed by `data_at_end` at offset 8 + IFD."""
        n = len(entries)
        ifd_size = 2 + 12 * n + 4
        body = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", n))
        for tag, typ, value in sorted(entries):
            v = 8 + ifd_size if value == "DATA" else value
            body += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", v, 0) if typ == 3 else struct.pack("<I", v))
        return bytes(body + b"\0\0\0\0" + data_at_end)
    # A 16 x 16 RGB image in one 16384 x 16384 Deflate tile of zeros (780 KB on disk, 805 MB decoded).
    z = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    tile = b"".join(z.compress(chunk) for _ in range(16384 * 16384 * 3 // len(chunk))) + z.flush()
    tif_tile = tiff_le([(256, 3, 16), (257, 3, 16), (258, 3, 8), (259, 3, 8), (262, 3, 2), (277, 3, 3), (284, 3, 1),
                        (322, 4, 16384), (323, 4, 16384), (324, 4, "DATA"), (325, 4, len(tile))], tile)
    # A 13000 x 13000 RGBA header whose one strip is missing (142 bytes).
    tif_header = tiff_le([(256, 4, 13000), (257, 4, 13000), (258, 3, 8), (259, 3, 1), (262, 3, 2), (277, 3, 4),
                          (338, 3, 2), (273, 4, 1 << 20), (278, 4, 13000), (279, 4, 13000 * 13000 * 4)])
    for kind, blob in (("TIFF 16x16 in a 16384x16384 tile", tif_tile), ("TIFF 13000x13000 header without data", tif_header)):
        fname = kind.lower().replace(" ", "_") + ".tif"
        with open(path(fname), "wb") as f:
            f.write(blob)
        # Bounded well below 1 GiB: neither the tile nor the image may be allocated before data is there.
        case(kind, ["preprocess", "--output", path(fname + ".npy"), path(fname)], fname, rss_mib=200)
    for kind, blob, ext in (("GIF 65535x65535 screen", gif_screen(65535, 65535), "gif"),
                            ("GIF cut in half", gif[:len(gif) // 2], "gif"),
                            ("GIF with 1,000,000 frames", many_frames, "gif"),
                            ("GIF with 200,000 extensions before its image", many_ext, "gif"),
                            ("BMP 2^31-1 x 100", bmp_bomb, "bmp"),
                            ("BMP RLE of 10000x10000 ending early", bmp_short, "bmp"),
                            ("BMP palette of 2^32 colours", bmp_palette, "bmp"),
                            ("TIFF 65535x65535", tif_bomb, "tif"),
                            ("TIFF strip claiming 4 GiB", tif_strip, "tif"),
                            ("TIFF cut in half", tif[:len(tif) // 2], "tif"),
                            ("TIFF whose next IFD is itself", bytes(tif_loop), "tif")):
        fname = kind.lower().replace(" ", "_").replace(",", "").replace("^", "").replace("/", "") + "." + ext
        with open(path(fname), "wb") as f:
            f.write(blob)
        # A file with a million frames or a self-referencing IFD still has a readable first image: decoded, exit 0.
        readable = "1,000,000 frames" in kind or "200,000 extensions" in kind or "itself" in kind
        case(kind, ["preprocess", "--output", path(fname + ".npy"), path(fname)], "" if readable else fname,
             exit_code=0 if readable else 1)

    # Camera RAW (LibRaw): a DNG declaring 65535 x 65535, one cut in half, one whose tags point past its end, and
    # Canon CR3 / Fuji RAF signatures over garbage.
    dng = open(os.path.join(ROOT, "Tests/CLIPImageTests/Fixtures/raw/bayer.dng"), "rb").read()
    def dng_size(w, h):
        d = bytearray(dng)
        ifd = struct.unpack_from("<I", d, 4)[0]
        for i in range(struct.unpack_from("<H", d, ifd)[0]):
            e = ifd + 2 + 12 * i
            tag, typ = struct.unpack_from("<HH", d, e)
            if tag in (256, 257):
                struct.pack_into("<I" if typ == 4 else "<H", d, e + 8, w if tag == 256 else h)
        return bytes(d)
    for kind, blob in (("DNG 65535x65535", dng_size(65535, 65535)), ("DNG cut in half", dng[:len(dng) // 2]),
                       ("DNG missing its last 10 bytes", dng[:-10]),
                       ("CR3 signature over garbage", b"\0\0\0\x18ftypcrx " + bytes(range(256)) * 64),
                       ("RAF signature over garbage", b"FUJIFILMCCD-RAW 0201" + bytes(range(256)) * 64)):
        fname = kind.lower().replace(" ", "_") + (".cr3" if "CR3" in kind else ".raf" if "RAF" in kind else ".dng")
        with open(path(fname), "wb") as f:
            f.write(blob)
        case(kind, ["preprocess", "--output", path(fname + ".npy"), path(fname)], fname)

    # 200,000 zero-size extra tensors.
    t = dict(base)
    for i in range(200_000):
        t[f"extra.{i}"] = ("F32", [0], b"")
    write_safetensors(path("many_extra.safetensors"), t)
    case("200,000 unexpected zero-size tensors", ["info", path("many_extra.safetensors")], "many_extra.safetensors")

    # FIFOs where a model or an image is expected, and the cache path.
    os.mkfifo(path("fifo.safetensors"))
    case("FIFO as --model", ["embed", "--model", path("fifo.safetensors"), "--text", "x"], "fifo.safetensors")
    os.makedirs(path("cache"))
    os.mkfifo(path("cache/ViT-B-32.pt"))
    case("FIFO at the cache path", ["embed", "--model", "ViT-B/32", "--cache-dir", path("cache"), "--text", "x"],
         "ViT-B-32.pt")
    os.mkfifo(path("fifo.jpg"))
    case("FIFO as an image", ["embed", "--model", TINY_VIT, "--image", path("fifo.jpg")], "fifo.jpg: cannot read: not a regular file")
    case("/dev/null as an image", ["embed", "--model", TINY_VIT, "--image", "/dev/null"],
         "/dev/null: cannot read: not a regular file")

    # Two RGBA PNGs just under the pixel limit, decoded together.
    from PIL import Image
    side = 13376
    big = Image.new("RGBA", (side, side), (10, 20, 30, 255))
    big.save(path("big_a.png"), compress_level=9)
    del big
    shutil.copy(path("big_a.png"), path("big_b.png"))
    # Streamed row by row into the resampler, both at once: seconds and a few tens of MB (decoded whole, one at a
    # time, they took 8.7 s and 724 MiB).
    case("two 13376² RGBA PNGs in one batch", ["preprocess", "--output", path("big.npy"), path("big_a.png"),
                                               path("big_b.png")], "", exit_code=0, seconds=5, rss_mib=256)

    # NaN and Inf weights, and a logit_scale whose exponential overflows (on the model with OpenAI's vocabulary).
    tiny = read_safetensors(TINY_VIT)
    numpy_dtypes = {"F32": "<f4", "F16": "<f2"}
    dtype, shape, blob = tiny["visual.proj"]
    for label, index, value in [("NaN", 3, np.nan), ("Inf", 5, np.inf)]:
        broken = dict(tiny)
        arr = np.frombuffer(blob, dtype=numpy_dtypes[dtype]).copy()
        arr[index] = value
        broken["visual.proj"] = (dtype, shape, arr.tobytes())
        write_safetensors(path(f"{label.lower()}.safetensors"), broken)
        # With an image: `embed` with texts alone loads the text tower only and never reads visual.proj.
        case(f"{label} in a weight", ["embed", "--model", path(f"{label.lower()}.safetensors"), "--image", PHOTO, "--text", "x"],
             f"'visual.proj' holds {'NaN' if label == 'NaN' else '+infinity'} at element {index}")
    # A text-only load (texts alone) reads the text tower's weights, and refuses them as any load does.
    dtype, shape, blob = tiny["text_projection"]
    broken = dict(tiny)
    arr = np.frombuffer(blob, dtype=numpy_dtypes[dtype]).copy()
    arr[2] = np.nan
    broken["text_projection"] = (dtype, shape, arr.tobytes())
    write_safetensors(path("nan_text.safetensors"), broken)
    case("NaN in a text weight, texts alone", ["embed", "--model", path("nan_text.safetensors"), "--text", "x"],
         "'text_projection' holds NaN at element 2")
    big_scale = dict(tiny)
    big_scale["logit_scale"] = ("F32", [], struct.pack("<f", 1e30))
    write_safetensors(path("logit_scale.safetensors"), big_scale)
    case("logit_scale 1e30", ["classify", "--model", path("logit_scale.safetensors"), PHOTO, "--labels", "a", "b"],
         "logit_scale")

    # A stored zip entry whose CRC is wrong.
    blob = bytearray(checkpoint(base))
    # The central directory's CRC of the first storage (the one the reader checks).
    record = blob.find(b"PK\x01\x02")
    while record >= 0:
        name_length = struct.unpack("<H", blob[record + 28:record + 30])[0]
        if blob[record + 46:record + 46 + name_length] == b"archive/data/0":
            break
        record = blob.find(b"PK\x01\x02", record + 4)
    blob[record + 16] ^= 0xFF
    open(path("bad_crc.pt"), "wb").write(bytes(blob))
    case("stored entry with a wrong CRC", ["info", path("bad_crc.pt")], "CRC")

    # A file name that is not UTF-8; --output naming a directory or an unwritable place.
    raw = os.path.join(out.encode(), b"\xff\xfe.jpg")
    shutil.copy(PHOTO, raw)
    cases.append({"name": "image path that is not UTF-8",
                  "args": ["embed", "--model", TINY_VIT, "--image", "b64:" + base64.b64encode(raw).decode()],
                  "exit": 1, "stderr": "UTF-8", "seconds": 5, "rss_mib": 1024})
    os.makedirs(path("outdir"))
    case("--output names a directory", ["embed", "--model", TINY_VIT, "--text", "x", "--output", path("outdir")],
         "is a directory")
    case("--output in a missing directory", ["embed", "--model", TINY_VIT, "--text", "x", "--output",
                                             path("missing/out.json")], "no such directory")
    case("--output under /proc", ["embed", "--model", TINY_VIT, "--text", "x", "--output", "/proc/version"],
         "/proc/version")

    # A corrupt model in the cache: one line.
    os.makedirs(path("cache2"))
    open(path("cache2/ViT-B-32.pt"), "wb").write(b"PK\x03\x04 not really a zip")
    case("corrupt cached model", ["embed", "--model", "ViT-B/32", "--cache-dir", path("cache2"), "--text", "x"],
         "ViT-B-32.pt")

    wave3_cases(case, path)
    if seed_index:
        mutated_indexes(case, path, seed_index)

    json.dump({"cases": cases}, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    print(f"wrote {len(cases)} cases to {out}")


# The clip index schema as its first migration wrote it (Sources/Apps/CLIPIndex/IndexSchema.swift), for hostile variants.
INDEX_V1 = """
CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
INSERT INTO grdb_migrations VALUES ('v1');
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('generation', '0');
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    dimension INTEGER NOT NULL CHECK (dimension > 0));
CREATE TABLE real_files (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    modified INTEGER NOT NULL, hash TEXT, width INTEGER, height INTEGER, error TEXT, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    model INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    UNIQUE (hash, model));
CREATE TABLE checkpoints (path TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, modified INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


def wave3_cases(case, path):
    """Issue 30: server flags past their bounds, configs of impossible sizes, an unbounded caption, databases that
    are not clip indexes (left byte for byte as they were)."""
    import sqlite3
    for flag, value in [("--header-timeout", "4611686018427387904"), ("--body-timeout", "0"), ("--idle-timeout", "86400"),
                        ("--max-image-pixels", "999999999999"), ("--max-text-bytes", "1"), ("--max-body-bytes", "99999999999")]:
        case(f"clip serve {flag} {value}", ["serve", flag, value], "", exit_code=64)
    for name, cfg, key in [("negative width", {"vision_cfg": {"width": -768}}, "vision_cfg.width"),
                           ("2^62 layers", {"vision_cfg": {"layers": 2 ** 62}}, "vision_cfg.layers"),
                           ("context_length -1", {"text_cfg": {"context_length": -1}}, "text_cfg.context_length")]:
        with open(path(f"config_{key}.json"), "w") as f:
            json.dump(cfg, f)
        case(f"--openclip-config with {name}, shipped model", ["classify", os.path.join(ROOT, "Examples/blue-star.png"),
             "--labels", "a", "b", "--openclip-config", path(f"config_{key}.json")], key)
    # A PNG header of 2^32 - 1 by 2^32 - 1: the pixel count does not fit 64 bits.
    open(path("sides_2e32.png"), "wb").write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b"\xff" * 8 + b"\x08\x02\x00\x00\x00")
    case("PNG of (2^32-1)^2 pixels", ["embed", "--image", path("sides_2e32.png")], "sides_2e32.png")
    # One 40 MB caption in an open_clip CSV.
    with open(path("long_caption.csv"), "w") as f:
        f.write("filepath,title\n")
        f.write(PHOTO + ",a photo of a cat " + "and a dog " * 4_000_000 + "\n")
        f.write(PHOTO + ",a photo\n")
    case("a 40 MB caption in a training CSV", ["train", "--data", path("long_caption.csv"), "--steps", "1", "--batch-size", "2",
         "--output", path("long_caption_out.safetensors")], "long_caption.csv: line 2")
    # Options past their bounds found by a sweep of every command (exit 64, or one line).
    for args in (["search", "--db", path("none.sqlite"), "--top", "9223372036854775807", "x"],
                 ["linear-probe", "--train", ".", "--test", ".", "--lambda", "nan"],
                 ["linear-probe", "--train", ".", "--test", ".", "--iterations", "4611686018427387904"],
                 ["synthetic", "--count", "2", "--output", path("syn"), "--start", "9223372036854775807"],
                 ["embed", "--input-list", path("none.txt"), "--output-dir", path("eo"), "--part", "4611686018427387904"],
                 ["bench", "--repeat", "4611686018427387904"],
                 ["preprocess", "--output", path("p.npy"), "--std", "1e-45,1e-45,1e-45", PHOTO],
                 ["preprocess", "--output", path("p.npy"), "--mean", "1,junk,2,3", PHOTO]):
        case(f"clip {' '.join(a if len(a) < 30 else '…' for a in args[:1] + args[-3:])}", args, "", exit_code=64)
    case("a query weight of 3e38", ["search", "--db", path("none.sqlite"), "3e38:red circle", "+", "3e38:red circle"],
         "at most 1000")
    case("/dev/zero as the API key file", ["serve", "--port", "0", "--api-key-file", "/dev/zero"], "/dev/zero")
    case("/dev/zero as a training config", ["train", "--config", "/dev/zero"], "/dev/zero")
    with open(path("seed15.json"), "w") as f:
        json.dump({"data": "synthetic", "steps": 1, "batch-size": 2, "output": path("o.safetensors"), "seed": 1.5}, f)
    case("a training config with a seed of 1.5", ["train", "--config", path("seed15.json")], "'seed'")
    with open(path("vocab_lines.txt"), "wb") as f:
        f.write(b"\n" * 5_000_000)
    case("a WordPiece vocabulary of 5 million empty lines", ["tokenize", "--wordpiece", path("vocab_lines.txt"), "hello"],
         "vocab_lines.txt", rss_mib=256)
    with open(path("blank_lines.csv"), "w") as f:
        f.write("filepath,title\n" + "\n" * 5_000_000)
    case("a training CSV of 5 million blank lines", ["train", "--data", path("blank_lines.csv"), "--steps", "1",
         "--batch-size", "2", "--output", path("blank_out.safetensors")], "no rows", rss_mib=256)
    os.makedirs(path("captioned"))
    for name in ("a", "b"):
        shutil.copy(PHOTO, path(f"captioned/{name}.jpg"))
        open(path(f"captioned/{name}.txt"), "w").write("a photo " * (20_000 if name == "b" else 1))
    case("an evaluation caption of 160 KB", ["eval", "--captions", path("captioned")], "b.txt")
    # Another application's database given as an index, and an index with an endless view and a trigger.
    other = sqlite3.connect(path("other-app.sqlite"))
    other.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');")
    other.commit()
    other.close()
    hostile = sqlite3.connect(path("view-trigger.sqlite"))
    hostile.executescript(INDEX_V1 + """
        CREATE VIEW files AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
            SELECT i AS id, 'x' || i AS path, 0 AS size, 0 AS modified, NULL AS hash, NULL AS width, NULL AS height,
                   NULL AS error, 0 AS deleted FROM n;
        CREATE TRIGGER spy AFTER INSERT ON embeddings BEGIN DELETE FROM models; END;
    """)
    hostile.commit()
    hostile.close()
    for db in ("other-app.sqlite", "view-trigger.sqlite"):
        case(f"clip search --db {db}", ["search", "--db", path(db), "a cat"], "not a clip index",
             unchanged=[path(db)])
        case(f"clip index --db {db}", ["index", os.path.join(ROOT, "Examples"), "--db", path(db)], "not a clip index",
             unchanged=[path(db)])


def mutated_indexes(case, path, seed):
    """A real index (`clip index Examples`, given with --seed-index) cut short and with bytes changed where SQLite
    keeps its header, its schema and its b-trees: each search ends in one clear error or a result, within bounds."""
    import random
    data = open(seed, "rb").read()
    rng = random.Random(30)
    mutants = [("cut to 100 bytes", data[:100]), ("cut to one page", data[:16384]), ("cut mid-page", data[:40000])]
    for offset, label in [(16, "page size"), (28, "page count"), (40, "schema cookie"), (56, "text encoding"),
                          (100, "first b-tree header"), (105, "first cell pointer")]:
        mutated = bytearray(data)
        mutated[offset] ^= 0xFF
        mutants.append((f"{label} flipped", bytes(mutated)))
    for i in range(12):
        mutated = bytearray(data)
        for _ in range(8):
            mutated[rng.randrange(100, len(mutated))] = rng.randrange(256)
        mutants.append((f"8 random bytes #{i}", bytes(mutated)))
    for i, (label, blob) in enumerate(mutants):
        name = f"mutated-{i}.sqlite"
        open(path(name), "wb").write(blob)
        case(f"index {label}", ["search", "--db", path(name), "a blue star"], name, exits=[0, 1])


if __name__ == "__main__":
    main()
