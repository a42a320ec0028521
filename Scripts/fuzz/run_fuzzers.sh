#!/usr/bin/env bash
# libFuzzer over the parsers that read untrusted bytes: safetensors headers, zip archives, whole PyTorch checkpoints
# (zip + unpickler + tensor views), bare pickles, the image decoders (GIF, BMP, TIFF, camera RAW, videos each from its own corpus), SentencePiece model files, training
# tables (CSV/TSV) and the CLIP tokenizer on arbitrary text. Each runs under AddressSanitizer
# and LeakSanitizer, starting from the committed corpus in Tests/Fuzz/Corpus/<target>.
#
#   bash Scripts/fuzz/run_fuzzers.sh                       # 20 s per target (what CI runs)
#   bash Scripts/fuzz/run_fuzzers.sh --seconds 600         # the long run: 10 minutes per target
#   bash Scripts/fuzz/run_fuzzers.sh --seconds 600 --update-corpus   # then merge new coverage into the corpus
#   bash Scripts/fuzz/run_fuzzers.sh --targets pickle,zip
#
# A crash, a timeout (10 s per input), more than 2 GiB of memory or a leak stops the target and fails the script;
# the input is kept as crash-*/timeout-*/oom-*/leak-* in the working directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=20
update=0
targets="safetensors,zip,checkpoint,pickle,image,gif,bmp,tiff,raw,video,sentencepiece,table,text"
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --update-corpus) update=1; shift ;;
    --targets) targets=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--update-corpus] [--targets a,b]" >&2; exit 64 ;;
    esac
done

# The fuzz entry points and every module they reach, compiled with coverage and sanitizers by SwiftPM (in a scratch
# directory of their own), then linked by hand: SwiftPM's executable link would add its own entry point, while
# libFuzzer brings main().
scratch=.build-fuzz
swift build --target clip-fuzz-replay --scratch-path "$scratch" -c debug \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DCLIP_FUZZ -Xcc -fsanitize=fuzzer-no-link,address
objects=$(swift build --target clip-fuzz-replay --scratch-path "$scratch" -c debug --show-bin-path)
objects=$(find "$objects"/{CCLIPImage,CCLIPKernels,CLIPFiles,CLIPTensor,CLIPWeights,CLIPImage,CLIPTokenizer,clip_fuzz_replay}.build \
    -name '*.o')
fuzzer="$scratch/clip-fuzzer"
# shellcheck disable=SC2086
swiftc -sanitize=fuzzer,address $objects -o "$fuzzer" -lz -ljpeg -lpng16 -lwebp -lwebpdemux -lheif -lavif -lgif -ltiff -lraw_r -lavformat -lavcodec -lswscale -lavutil 2>&1 | grep -v "Cannot export local symbol" || true
[ -x "$fuzzer" ]

status=0
for target in ${targets//,/ }; do
    corpus=Tests/Fuzz/Corpus/$target
    [ -d "$corpus" ] || { echo "no corpus at $corpus (run Scripts/fuzz/make_seeds.py)" >&2; exit 1; }
    found=$(mktemp -d)
    echo "== $target: $seconds s"
    if ! CLIP_FUZZ_TARGET=$target "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "$found" "$corpus" > "$found.log" 2>&1; then
        status=1
        tail -n 40 "$found.log"
        echo "$target: FAILED (see the crash-*/timeout-*/oom-*/leak-* input above)"
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added" "$found.log" | tr '\n' ' '
        echo
    fi
    if [ "$update" = 1 ]; then
        # Minimised merge: only inputs that add coverage join the committed corpus.
        CLIP_FUZZ_TARGET=$target "$fuzzer" -merge=1 "$corpus" "$found" > /dev/null 2>&1 || true
    fi
    rm -rf "$found" "$found.log"
done
exit $status
