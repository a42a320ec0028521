#!/usr/bin/env bash
# Installs the C libraries the image decoders and checkpoint reader link (zlib, libjpeg-turbo, libpng, libwebp,
# libheif for HEIC, libavif for AVIF, giflib for GIF, libtiff for TIFF, LibRaw for camera RAW, FFmpeg's libraries for videos)
# and SQLite (the photo index, through GRDB) and pkg-config, unless they are already present. Debian/Ubuntu (apt-get) and macOS (Homebrew).
set -euo pipefail
if pkg-config --exists zlib libjpeg libpng libwebp libheif libavif libgif libtiff-4 libraw_r libavformat libavcodec libswscale sqlite3 2>/dev/null; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq pkg-config zlib1g-dev libjpeg-dev libpng-dev libwebp-dev libheif-dev libavif-dev libgif-dev libtiff-dev libraw-dev libavformat-dev libavcodec-dev libswscale-dev libsqlite3-dev
elif command -v brew >/dev/null 2>&1; then
    brew install pkg-config zlib jpeg-turbo libpng webp libheif libavif giflib libtiff libraw ffmpeg sqlite
else
    echo "setup.sh: install pkg-config and the development files of zlib, libjpeg, libpng, libwebp, libheif, libavif, giflib, libtiff, libraw, FFmpeg (libavformat, libavcodec, libswscale) and sqlite3" >&2
    exit 1
fi
