#!/usr/bin/env bash
# TLS check of a running server with Debian's testssl (package testssl.sh, command `testssl`):
# protocols, cipher categories, forward secrecy, server defaults, HTTP headers (HSTS) and the
# well-known vulnerabilities. With no argument it starts a node (node dist/main.js, built by the
# set-up step) on a free port in a throw-away data directory, checks it, and stops it.
#
#   scripts/testssl.sh                    # start a node and check it
#   scripts/testssl.sh 127.0.0.1:8443     # check a server that is already running
#
# Prints testssl's findings and a summary; writes the JSON to $TESTSSL_JSON (default
# bench/results/testssl.json). Exit status 0 only when: no protocol below TLS 1.2 is offered,
# TLS 1.2 is, no NULL/aNULL/EXPORT/LOW/3DES/RC4 cipher is offered, HSTS is sent, and testssl rates
# no finding MEDIUM, HIGH or CRITICAL.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v testssl >/dev/null || { echo "testssl is not installed: apt-get install testssl.sh" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is not installed: apt-get install jq" >&2; exit 2; }

target="${1:-}"
json="${TESTSSL_JSON:-bench/results/testssl.json}"
mkdir -p "$(dirname "$json")"
server_pid=""
data_dir=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$data_dir" ]; then rm -rf "$data_dir"; fi
}
trap cleanup EXIT

if [ -z "$target" ]; then
  main="${CC_MAIN:-dist/main.js}"  # CC_MAIN: another build of the server (a work tree in progress)
  [ -f "$main" ] || { echo "$main is missing: run npm run build" >&2; exit 2; }
  port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  data_dir="$(mktemp -d /tmp/testssl-node.XXXXXX)"
  PORT="$port" HOST=127.0.0.1 DATA_DIR="$data_dir" LOG_LEVEL=warn DEMO_SLIDE=false RETENTION_PURGE_MINUTES=0 MEDIASOUP_WORKERS=0 \
    node "$main" >"$data_dir/out.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    grep -q '^listening on' "$data_dir/out.log" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$data_dir/out.log" >&2; echo "the server did not start" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^listening on' "$data_dir/out.log" || { echo "the server did not start within 30 s" >&2; exit 1; }
  target="127.0.0.1:$port"
fi

rm -f "$json"
started=$(date +%s)
# -p protocols, -s cipher categories, -f forward secrecy, -S server defaults, -h HTTP headers,
# -U vulnerabilities; --ip one avoids probing every resolved address.
testssl --quiet --color 0 --warnings off --ip one --jsonfile "$json" -p -s -f -S -h -U "https://$target/healthz" || true
elapsed=$(( $(date +%s) - started ))

[ -s "$json" ] || { echo "testssl wrote no JSON" >&2; exit 1; }
finding() { jq -r --arg id "$1" '[.[] | select(.id == $id) | .finding][0] // "absent"' "$json"; }
failures=()
for p in SSLv2 SSLv3 TLS1 TLS1_1; do
  f="$(finding "$p")"
  [[ "$f" == not\ offered* ]] || failures+=("$p: $f")
done
[[ "$(finding TLS1_2)" == offered* ]] || failures+=("TLS1_2: $(finding TLS1_2)")
# AVERAGE is testssl's category of CBC suites (LUCKY13): the server offers AEAD suites only.
for c in cipherlist_NULL cipherlist_aNULL cipherlist_EXPORT cipherlist_LOW cipherlist_3DES_IDEA cipherlist_AVERAGE; do
  f="$(finding "$c")"
  [[ "$f" == not\ offered* ]] || failures+=("$c: $f")
done
hsts="$(finding HSTS_time)"
[[ "$hsts" != absent && "$hsts" != *not* ]] || failures+=("HSTS: $hsts")
[[ "$(finding LUCKY13)" == not\ vulnerable* ]] || failures+=("LUCKY13: $(finding LUCKY13)")
# The generated certificate is self-signed by design (DESIGN 7: production mounts a real one):
# its trust findings are reported, not failed, when this script started the node or when
# ALLOW_SELF_SIGNED=1 says the target uses the generated certificate too.
self_signed_ok=""
if [ -n "$server_pid" ] || [ "${ALLOW_SELF_SIGNED:-}" = 1 ]; then self_signed_ok=1; fi
expected=()
while IFS=$'\t' read -r id line; do
  if [ -n "$self_signed_ok" ] && [[ "$id" =~ ^cert_(chain_of_trust|revocation|trust)$ ]]; then expected+=("$line"); else failures+=("$line"); fi
done < <(jq -r '.[] | select(.severity == "MEDIUM" or .severity == "HIGH" or .severity == "CRITICAL") | "\(.id)\t\(.id) [\(.severity)]: \(.finding)"' "$json")

echo
echo "== testssl summary for $target ($(testssl --version 2>/dev/null | grep -o 'testssl *[0-9.]*' | head -1 | tr -s ' '), ${elapsed} s)"
for id in SSLv2 SSLv3 TLS1 TLS1_1 TLS1_2 TLS1_3 cipherlist_NULL cipherlist_aNULL cipherlist_EXPORT cipherlist_LOW cipherlist_3DES_IDEA cipherlist_AVERAGE cipherlist_STRONG PFS PFS_ciphers LUCKY13 HSTS_time; do
  printf '  %-22s %s\n' "$id" "$(finding "$id")"
done
printf '  %-22s %s\n' "severity counts" "$(jq -r 'group_by(.severity) | map("\(.[0].severity)=\(length)") | join(" ")' "$json")"
if [ ${#expected[@]} -gt 0 ]; then
  echo "  expected for the generated self-signed certificate:"
  printf '    %s\n' "${expected[@]}"
fi
if [ ${#failures[@]} -gt 0 ]; then
  echo "FAILED:"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASSED: TLS 1.2+ only, AEAD ciphers with forward secrecy only, HSTS sent, no other MEDIUM/HIGH/CRITICAL finding"
