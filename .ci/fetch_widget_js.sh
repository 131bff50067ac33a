#!/usr/bin/env bash
# Fetch the ipywidgets HTML manager and RequireJS from the npm registry into
# _widgets_js/widgets/, which the book serves as static files (see _config.yml),
# so that widgets in the built book render without any CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=_widgets_js/widgets
[ -f "$dest/require.js" ] && [ -f "$dest/html-manager/embed-amd.js" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent requirejs@2.3.7 @jupyter-widgets/html-manager@1.0.6 >/dev/null)
mkdir -p "$tmp/req" "$tmp/hm"
tar xzf "$tmp"/requirejs-2.3.7.tgz -C "$tmp/req"
tar xzf "$tmp"/jupyter-widgets-html-manager-1.0.6.tgz -C "$tmp/hm"
rm -rf "$dest" && mkdir -p "$dest/html-manager"
cp "$tmp/req/package/require.js" "$dest/"
# embed-amd.js (self-contained AMD bundle) and the fonts it loads relative to itself.
find "$tmp/hm/package/dist" -maxdepth 1 -type f ! -name '*.map' ! -name 'embed.js' ! -name '*.embed.js' \
  ! -name 'libembed-amd.js' ! -name '*.txt' -exec cp {} "$dest/html-manager/" \;
echo "widget JavaScript ready in $dest"
