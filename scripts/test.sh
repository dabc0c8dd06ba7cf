#!/usr/bin/env bash
# The test command (README): typecheck, build, then every test file in one node:test run so the
# closing summary covers unit, integration, e2e and fault tests together.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run -s lint
npm run -s build
shopt -s nullglob
files=(test/fault/*.test.ts test/e2e/*.test.ts test/integration/*.test.ts test/unit/*.test.ts)
if [ "${#files[@]}" -eq 0 ]; then echo "no test files" >&2; exit 1; fi
# Slowest first, so that no long file starts last and leaves a core idle at the end: by the newest
# durations file when there is one (files it does not list first), else fault, e2e, integration, unit.
last="$(ls -t test-artifacts/durations-node*.txt 2>/dev/null | head -n1 || true)"
if [ -n "$last" ]; then
  mapfile -t files < <(printf '%s\n' "${files[@]}" | awk -v f="$last" '
    BEGIN { while ((getline l < f) > 0) if (split(l, a, " ") >= 3 && a[2] == "s") t[a[3]] = a[1] }
    { print (($0 in t) ? t[$0] : 1e9), NR, $0 }' | sort -k1,1gr -k2,2n | cut -d' ' -f3-)
fi
# dist/ is this commit's build: tests run the CLI from it rather than through tsx (test/helpers/cli.ts).
export MYCELIS_TEST_BUILT=1
# Per-file durations (slowest first) go to test-artifacts/durations-node<version>.txt.
# Three files at a time on two cores: the fault and e2e files mostly wait (ACK_WAIT, outages, restarts),
# two at a time left a third of the CPU idle (Node 26: 406 s at 2, 351 s at 3, every test passing, the
# 512 KiB test's peak 256 MB either way). TEST_CONCURRENCY overrides it.
mkdir -p test-artifacts
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-3}" \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=./scripts/test-durations.mjs --test-reporter-destination="test-artifacts/durations-node$(node -p process.versions.node).txt" \
  "${files[@]}"
