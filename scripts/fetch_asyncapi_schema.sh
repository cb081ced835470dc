#!/usr/bin/env bash
# Refresh schemas/asyncapi-3.0.0.json: the official AsyncAPI 3.0.0 JSON Schema (bundled, every
# $ref inlined), from the npm package @asyncapi/specs (file schemas/3.0.0.json in its tarball).
# Usage: scripts/fetch_asyncapi_schema.sh [VERSION]   (default: the package's latest release)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/schemas/asyncapi-3.0.0.json"
registry="https://registry.npmjs.org/@asyncapi/specs"
fail() { echo "fetch_asyncapi_schema: error: $1; $2" >&2; exit 1; }

command -v curl >/dev/null || fail "curl is missing" "install curl"
meta="$(curl -fsSL --max-time 30 "$registry")" || fail "cannot read $registry" "check the network"
version="${1:-$(printf '%s' "$meta" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dist-tags"]["latest"])')}"
read -r tarball integrity < <(printf '%s' "$meta" | python3 -c '
import json, sys
dist = json.load(sys.stdin)["versions"][sys.argv[1]]["dist"]
print(dist["tarball"], dist["integrity"])' "$version") || fail "no version $version of @asyncapi/specs" "pass a published version"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsSL --max-time 60 -o "$work/specs.tgz" "$tarball" || fail "cannot download $tarball" "check the network"
# npm's integrity is sha512 of the tarball, base64.
actual="sha512-$(openssl dgst -sha512 -binary "$work/specs.tgz" | base64 -w0)"
[ "$actual" = "$integrity" ] || fail "the tarball's sha512 does not match the registry's" "retry; do not use it"
tar -xzf "$work/specs.tgz" -C "$work" package/schemas/3.0.0.json \
    || fail "the tarball has no schemas/3.0.0.json" "pick a version that ships AsyncAPI 3.0.0"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/package/schemas/3.0.0.json" \
    || fail "schemas/3.0.0.json is not JSON" "report it upstream"
cp "$work/package/schemas/3.0.0.json" "$target"
echo "wrote $target from @asyncapi/specs $version ($tarball, $integrity)"
