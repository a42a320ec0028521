#!/usr/bin/env bash
# The C kernels' own tests (Tests/CKernelTests/kernel_tests.c), without Swift:
#  - natively, at every CPU level this machine can force with CLIP_CPU (avx512, avx2, portable on x86-64);
#  - for arm64, cross-compiled and run under qemu-user on an emulated CPU with DotProd (`-cpu max`: NEON fp32 and
#    int8 kernels) and one without (`-cpu cortex-a72`: NEON fp32, int8 refused), and at CLIP_CPU=portable.
# The arm64 part needs Debian's gcc-aarch64-linux-gnu and qemu-user (`--install` installs them with apt-get); it is
# skipped with a message when they are missing and --require-arm64 is not given.
set -euo pipefail
cd "$(dirname "$0")/../.."
install=0 require_arm64=0
for arg in "$@"; do
    case "$arg" in
    --install) install=1 ;;
    --require-arm64) require_arm64=1 ;;
    *) echo "usage: $0 [--install] [--require-arm64]" >&2; exit 64 ;;
    esac
done
cc=${CC:-clang}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sources=(Tests/CKernelTests/kernel_tests.c Sources/C/CCLIPKernels/*.c)
flags=(-O2 -Wall -Werror -ISources/C/CCLIPKernels/include)

"$cc" "${flags[@]}" "${sources[@]}" -o "$out/native" -lm -lpthread
levels=(native portable)
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then levels+=(avx2); fi
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then levels+=(avx512); fi
for level in "${levels[@]}"; do
    echo "== native, CLIP_CPU=$level"
    CLIP_CPU=$level "$out/native" | tail -n 4
done

if [ "$install" = 1 ] && ! command -v qemu-aarch64 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    if [ "$require_arm64" = 1 ]; then
        echo "test_kernels.sh: arm64 needs gcc-aarch64-linux-gnu and qemu-user (run with --install)" >&2
        exit 1
    fi
    echo "skipped arm64: gcc-aarch64-linux-gnu or qemu-user missing (run with --install)"
    exit 0
fi
# Compiled by the same clang as the package (for its NEON intrinsics and target attributes), linked by GCC's cross
# toolchain, which brings the arm64 C library.
mkdir -p "$out/arm64"
for src in "${sources[@]}"; do
    "$cc" --target=aarch64-linux-gnu "${flags[@]}" -c "$src" -o "$out/arm64/$(basename "$src" .c).o"
done
aarch64-linux-gnu-gcc "$out"/arm64/*.o -o "$out/arm64-tests" -lm -lpthread
for run in "max native" "cortex-a72 native" "max portable"; do
    set -- $run
    echo "== arm64 under qemu, -cpu $1, CLIP_CPU=$2"
    CLIP_CPU=$2 qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu "$out/arm64-tests" | tail -n 4
done
