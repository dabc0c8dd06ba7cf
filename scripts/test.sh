#!/usr/bin/env bash
# The test command (README): typecheck, build, then every test file in one node:test run so the
# closing summary covers unit, integration, e2e and fault tests together.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run -s lint
npm run -s build
shopt -s nullglob
files=(test/unit/*.test.ts test/integration/*.test.ts test/e2e/*.test.ts test/fault/*.test.ts)
if [ "${#files[@]}" -eq 0 ]; then echo "no test files" >&2; exit 1; fi
# dist/ is this commit's build: tests run the CLI from it rather than through tsx (test/helpers/cli.ts).
export MYCELIS_TEST_BUILT=1
# Per-file durations (slowest first) go to test-artifacts/durations-node<version>.txt.
mkdir -p test-artifacts
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=./scripts/test-durations.mjs --test-reporter-destination="test-artifacts/durations-node$(node -p process.versions.node).txt" \
  "${files[@]}"
