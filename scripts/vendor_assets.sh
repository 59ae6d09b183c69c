#!/usr/bin/env bash
# Refresh the JavaScript the book ships so it renders offline: MathJax, and bertviz's require.js, d3 and
# jQuery (chapter 15; the major versions bertviz 1.4.1 asks its CDN for: d3 5, jQuery 2). Pinned versions from
# the npm registry; the copies are committed, so building the book needs no node and no network.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund mathjax@3.2.2 requirejs@2.3.8 d3@5.16.0 jquery@2.2.4)
src="$work/node_modules/mathjax/es5"
dst=_vendor/mathjax
rm -rf "$dst" && mkdir -p "$dst/input/tex" "$dst/output/chtml/fonts"
cp "$src/tex-mml-chtml.js" "$dst/"
cp -r "$src/input/tex/extensions" "$dst/input/tex/"      # loaded on demand by \require and autoload
cp -r "$src/output/chtml/fonts/woff-v2" "$dst/output/chtml/fonts/"
cp "$work/node_modules/mathjax/LICENSE" "$dst/LICENSE"
echo "vendored MathJax 3.2.2 into $dst ($(du -sh "$dst" | cut -f1))"
dst=_vendor/bertviz  # README.md and LICENSE-requirejs there are written by hand (the npm package has no LICENSE)
mkdir -p "$dst"
cp "$work/node_modules/requirejs/require.js" "$work/node_modules/d3/dist/d3.min.js" \
   "$work/node_modules/jquery/dist/jquery.min.js" "$dst/"
cp "$work/node_modules/d3/LICENSE" "$dst/LICENSE-d3"
cp "$work/node_modules/jquery/LICENSE.txt" "$dst/LICENSE-jquery"
echo "vendored require.js 2.3.8, d3 5.16.0 and jQuery 2.2.4 into $dst ($(du -sh "$dst" | cut -f1))"
