#!/usr/bin/env bash
# Fetch the JavaScript the built book needs from the npm registry into _vendor/,
# which the book serves as static files (see _config.yml), so that widgets and
# math render without any CDN:
#   _vendor/widgets/  RequireJS and the ipywidgets HTML manager (embed-amd.js + fonts)
#   _vendor/mathjax/  MathJax 3 (TeX input, CommonHTML output, its fonts and extensions)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=_vendor
[ -f "$dest/.complete" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent requirejs@2.3.7 @jupyter-widgets/html-manager@1.0.6 mathjax@3.2.2 >/dev/null)
for pkg in requirejs-2.3.7 jupyter-widgets-html-manager-1.0.6 mathjax-3.2.2; do
  mkdir -p "$tmp/$pkg" && tar xzf "$tmp/$pkg.tgz" -C "$tmp/$pkg"
done
rm -rf "$dest" && mkdir -p "$dest/widgets/html-manager" "$dest/mathjax"
cp "$tmp/requirejs-2.3.7/package/require.js" "$dest/widgets/"
# embed-amd.js is a self-contained AMD bundle; it loads its fonts relative to itself.
find "$tmp/jupyter-widgets-html-manager-1.0.6/package/dist" -maxdepth 1 -type f \
  \( -name 'embed-amd.js' -o -name '*.woff*' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
  -exec cp {} "$dest/widgets/html-manager/" \;
mj="$tmp/mathjax-3.2.2/package/es5"
cp "$mj/tex-mml-chtml.js" "$dest/mathjax/"
mkdir -p "$dest/mathjax/output/chtml/fonts" "$dest/mathjax/input/tex"
cp -r "$mj/output/chtml/fonts/woff-v2" "$dest/mathjax/output/chtml/fonts/"
cp -r "$mj/input/tex/extensions" "$dest/mathjax/input/tex/"
touch "$dest/.complete"
echo "JavaScript for the book ready in $dest/ ($(du -sh "$dest" | cut -f1))"
