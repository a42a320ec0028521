#!/usr/bin/env bash
# Builds the CLIPKit documentation (DocC catalog + symbol graphs) without the swift-docc-plugin dependency, and
# fails on any warning (a broken symbol link, an undocumented topic). Output: .build/docs/CLIPKit.doccarchive;
# `--preview` serves it on http://localhost:8080 instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
docc=$(command -v docc || xcrun --find docc)
swift package dump-symbol-graph --minimum-access-level public >/dev/null
graphs=$(dirname "$(find .build -path '*symbolgraph/CLIPKit.symbols.json' | head -1)")
# Only CLIPKit's own graph: the re-exported modules would otherwise be documented as part of it.
only=$(mktemp -d)
trap 'rm -rf "$only"' EXIT
cp "$graphs"/CLIPKit.symbols.json "$only"/
mkdir -p .build/docs
mode=convert
[[ "${1:-}" == "--preview" ]] && mode=preview
"$docc" "$mode" Sources/Kit/CLIPKit/CLIPKit.docc --fallback-display-name CLIPKit --fallback-bundle-identifier swift-clip.CLIPKit \
    --additional-symbol-graph-dir "$only" --output-path .build/docs/CLIPKit.doccarchive --warnings-as-errors
