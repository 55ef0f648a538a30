#!/usr/bin/env bash
# Fetch the Swagger UI files that tqd serves at /docs (no CDN at run time).
#
# They come from the npm package swagger-ui-dist, pinned by version and by
# the sha256 of its tarball; only the files /docs serves, and the licences,
# are copied into tqd/api/docs_assets/swagger-ui/ and committed. Run it again
# after changing VERSION and SHA256 to upgrade.
set -euo pipefail
VERSION=5.35.0
SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
FILES=(swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE
       swagger-ui-bundle.js.LICENSE.txt)

here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/tqd/api/docs_assets/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null
tarball="swagger-ui-dist-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum -c --quiet
tar xzf "$tarball"
mkdir -p "$dest"
for f in "${FILES[@]}"; do cp "package/$f" "$dest/$f"; done
echo "swagger-ui-dist $VERSION -> $dest"
