#!/usr/bin/env bash
# Runs every test of keyledger on a fresh machine: installs what is missing,
# checks formatting and vet, then runs all tests with the race detector.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "test.sh: Go is not installed; install Go $(sed -n 's/^go //p' go.mod) or newer" >&2
    exit 1
  fi
fi
# The race detector needs cgo and a C compiler.
if ! command -v gcc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq gcc >/dev/null
  fi
fi
export CGO_ENABLED=1
# The Runway example's test runs its README's story with bash and curl.
if ! command -v curl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  fi
fi
# The settings page's browser tests (web/, cmd/keyledger/ui_test.go) drive
# Debian's Chromium; they fail, not skip, without it.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
fi

go mod download

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test.sh: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...

# Short fuzz and fault runs by default; KEYLEDGER_LONG=1 runs them longer.
go test -race -count=1 -timeout 20m ./... "$@"

# Each fuzz target for a short fixed time (corpora in each package's
# testdata/fuzz; KEYLEDGER_FUZZTIME runs them longer). -fuzzminimizetime
# keeps the minimizing of a new input from eating the run.
fuzztime=${KEYLEDGER_FUZZTIME:-2s}
# go1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime runs out while a worker is mid-call (golang/go#75804,
# fixed in go1.27): no input is written and nothing is found. Such a run is
# tried once more; any other failure, or one that writes a failing input,
# fails at once.
fuzz() {
  local log
  log=$(mktemp)
  if go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" -fuzzminimizetime 10x "$1" 2>&1 | tee "$log"; then
    rm -f "$log"; return 0
  fi
  if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written\|panic:\|_test.go:' "$log"; then
    echo "fuzz $2: the go1.26 fuzztime deadline race (golang/go#75804), no input found; once more"
    rm -f "$log"
    go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" -fuzzminimizetime 10x "$1"
    return
  fi
  rm -f "$log"; return 1
}
fuzz ./domain FuzzCheckKeyFormat
fuzz ./domain FuzzKeyParts
fuzz ./domain FuzzKeyCorruption
fuzz ./eventstore FuzzDecodeFast
fuzz ./eventstore FuzzDecode
fuzz ./projections FuzzDecodeRecordFast
fuzz ./webhooks FuzzSignVerifies
fuzz ./webhooks FuzzVerifySignatureHeaders
fuzz ./api FuzzParseValue
fuzz ./api FuzzDecodeRequests
fuzz ./api FuzzValidateHandler
fuzz ./api FuzzWidgetToken
fuzz ./api FuzzWidgetClaims
fuzz ./cmd/keyledger FuzzAPIRequests

# The hot-path benchmarks, a few iterations each, so that they cannot rot
# (figures come from full runs, never from here).
go test -run '^$' -bench . -benchtime 20x -timeout 10m ./...

# Every scenario of the instrument, small; fails only if one errors. The
# PostgreSQL comparison runs when scripts/postgres.sh can install and start
# PostgreSQL here; otherwise it is reported as skipped.
if [ -z "${KEYLEDGER_BENCH_POSTGRES_DSN:-}" ]; then
  if dsn=$(bash scripts/postgres.sh 2>/tmp/keyledger-postgres.log | tail -n 1) && [ -n "$dsn" ]; then
    export KEYLEDGER_BENCH_POSTGRES_DSN="$dsn"
  else
    echo "test.sh: PostgreSQL could not be started (see /tmp/keyledger-postgres.log); validate-postgres is skipped" >&2
  fi
fi
go run ./cmd/keyledger bench --quick
