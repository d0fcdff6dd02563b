#!/usr/bin/env bash
# Refresh the console's vendored htmx from its npm package at the pinned version (a maintainer's
# step, not a build step: the file is committed, so running the console needs no Node).
set -euo pipefail
VERSION=2.0.11
DEST="$(cd "$(dirname "$0")/.." && pwd)/services/console/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack "htmx.org@$VERSION" --silent >/dev/null && tar xzf "htmx.org-$VERSION.tgz")
cp "$WORK/package/dist/htmx.min.js" "$DEST/htmx.min.js"
cp "$WORK/package/LICENSE" "$DEST/htmx.LICENSE"
echo "htmx $VERSION: $(sha256sum "$DEST/htmx.min.js" | cut -d' ' -f1) (update the table in $DEST/README.md)"
