#!/usr/bin/env bash
# Refresh the JavaScript the book ships so it renders offline (MathJax now; bertviz's require.js,
# d3 and jQuery when the interpretability chapter lands). Pinned versions from the npm registry;
# the copies are committed, so building the book needs no node and no network.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund mathjax@3.2.2)
src="$work/node_modules/mathjax/es5"
dst=_vendor/mathjax
rm -rf "$dst" && mkdir -p "$dst/input/tex" "$dst/output/chtml/fonts"
cp "$src/tex-mml-chtml.js" "$dst/"
cp -r "$src/input/tex/extensions" "$dst/input/tex/"      # loaded on demand by \require and autoload
cp -r "$src/output/chtml/fonts/woff-v2" "$dst/output/chtml/fonts/"
cp "$work/node_modules/mathjax/LICENSE" "$dst/LICENSE"
echo "vendored MathJax 3.2.2 into $dst ($(du -sh "$dst" | cut -f1))"
