#!/usr/bin/env bash
# Runs the qrt binary the way users and scripts do: exit codes, one-line errors, JSON output,
# config from file and environment, and bench's report directory.
set -uo pipefail
qrt="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
unset QRT_PROVIDER QRT_QUEUE
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect CODE PATTERN -- ARGS...: exit code CODE; stderr one line matching PATTERN (when CODE != 0)
expect() {
  local code="$1" pattern="$2"; shift 3
  "$qrt" "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [[ $got -ne $code ]]; then
    fail "qrt $* exited $got, expected $code; stderr: $(cat "$tmp/err")"
    return
  fi
  if [[ $code -ne 0 ]]; then
    local lines; lines=$(wc -l <"$tmp/err")
    [[ $lines -eq 1 ]] || fail "qrt $*: expected one line on stderr, got $lines: $(cat "$tmp/err")"
  fi
  if [[ -n "$pattern" ]] && ! grep -qE -- "$pattern" "$tmp/out" "$tmp/err"; then
    fail "qrt $*: output does not match '$pattern': $(cat "$tmp/out" "$tmp/err")"
  fi
}

# expect_quiet ARGS...: exit code 0 and nothing on stdout (e.g. no messages to print)
expect_quiet() {
  expect 0 "" -- "$@"
  [[ ! -s "$tmp/out" ]] || fail "qrt $*: expected no output, got: $(head -c 300 "$tmp/out")"
}

# Help a newcomer can follow.
expect 0 "bench" -- --help
expect 0 "--max" -- receive --help
expect 0 "--report-dir" -- bench --help

# Bad input: one clear line, non-zero exit.
expect 2 "no provider" -- send --queue q --body x
expect 2 "provider" -- send --provider nope --queue q --body x
expect 2 "queue" -- send --provider memory --body x
expect 2 "needs --body" -- send --provider memory --queue q
expect 2 "key=value" -- send --provider memory --queue q --body x --attribute novalue
expect 2 "wait" -- receive --provider memory --queue q --wait -1
expect 2 "max_queue_size" -- send --provider memory --queue q --body x --set max_queue_size=abc
expect 2 "lock_duraton" -- send --provider memory --queue q --body x --set lock_duraton=5s
expect 2 "message size" -- bench --size 8 --messages 10
expect 2 "/nonexistent/targets.yaml" -- bench --targets /nonexistent/targets.yaml
expect 2 "duration" -- bench --duration soon
expect 2 "subcommand|frobnicate" -- frobnicate
expect 2 "/nonexistent" -- send --provider memory --queue q --body x --body-file /nonexistent

# Commands work (the embedded provider lives only as long as one invocation).
expect 0 '^\{"id":"' -- send --provider memory --queue q --body hello --output json
expect_quiet receive --provider memory --queue q --wait 0.1 --output json
expect 0 "no messages" -- receive --provider memory --queue q --wait 0.1
expect 0 '"active":0' -- stats --provider memory --queue q --output json
expect_quiet peek --provider memory --queue q
expect_quiet dlq list --provider memory --queue q
expect 0 "replayed 0" -- dlq replay --provider memory --queue q --wait 0.1

# The persisted embedded provider: one process sends, later ones read the same directory.
expect 0 '^\{"id":"' -- send --provider memory --queue q --body persisted --attribute k=v \
  --persistence-path "$tmp/log" --output json
expect 0 '"body_base64":"cGVyc2lzdGVk","attributes":\{"k":"v"\}.*"delivery_count":0' -- \
  peek --provider memory --queue q --persistence-path "$tmp/log" --output json
expect 0 '"active":1' -- stats --provider memory --queue q --persistence-path "$tmp/log" --output json
expect 0 '"attributes":\{"k":"v"\}' -- receive --provider memory --queue q --wait 1 \
  --persistence-path "$tmp/log" --durability interval --output json
expect 0 '"active":0' -- stats --provider memory --queue q --persistence-path "$tmp/log" --output json
expect_quiet dlq list --provider memory --queue q --persistence-path "$tmp/log"
expect 2 "durability" -- send --provider memory --queue q --body x --persistence-path "$tmp/log" \
  --durability sometimes

# Provider from a config file and from the environment.
printf 'provider: memory\nmax_queue_size: 50\n' >"$tmp/cfg.yaml"
expect 0 "sent" -- send --config "$tmp/cfg.yaml" --queue q --body hi
QRT_PROVIDER=memory expect 0 "sent" -- send --queue q --body hi
printf 'provider: memory\nmax_queue_size: nope\n' >"$tmp/bad.yaml"
expect 2 "max_queue_size" -- send --config "$tmp/bad.yaml" --queue q --body hi

# bench: table, report.json + chart.html, targets, and exit 3 on a miss.
cat >"$tmp/targets.yaml" <<'YAML'
development:
  performance_targets:
    throughput:
      messages_per_second: 10
    latency:
      p95_message_latency: "<10s"
impossible:
  performance_targets:
    throughput:
      messages_per_second: 1000000000000
YAML
expect 0 "end-to-end" -- bench --messages 2000 --threads 1 --report-dir "$tmp/report" --targets "$tmp/targets.yaml" --environment development
[[ -s "$tmp/report/report.json" ]] || fail "bench did not write report.json"
[[ -s "$tmp/report/chart.html" ]] || fail "bench did not write chart.html"
grep -q '"baseline":{"name":"moodycamel::ConcurrentQueue"' "$tmp/report/report.json" || fail "report.json lacks the baseline"
grep -q '"status":"pass"' "$tmp/report/report.json" || fail "report.json lacks target checks"
grep -q '<svg' "$tmp/report/chart.html" || fail "chart.html has no chart"
sed -i 's/^impossible:/production:/' "$tmp/targets.yaml"
expect 3 "target was missed" -- bench --messages 1000 --threads 1 --no-baseline --targets "$tmp/targets.yaml" --environment production --fail-on-miss
expect 0 '"end_to_end_msgs_per_s"' -- bench --messages 1000 --threads 1 --no-baseline --output json

# bench --metrics: the instrumented run's exposition, accepted by promtool.
expect 0 "" -- bench --messages 1000 --threads 1 --no-baseline --metrics --report-dir "$tmp/m"
grep -q '^queue_runtime_messages_processed_total{queue="qrt-bench",provider="memory"} 1000$' "$tmp/m/metrics.prom" \
  || fail "metrics.prom lacks the processed count: $(head -20 "$tmp/m/metrics.prom")"
grep -q '^queue_runtime_messages_sent_total{queue="qrt-bench",provider="memory"} 1000$' "$tmp/m/metrics.prom" \
  || fail "metrics.prom lacks the sent count"
if command -v promtool >/dev/null; then
  promtool check metrics <"$tmp/m/metrics.prom" || fail "promtool rejects metrics.prom"
else
  fail "promtool missing (scripts/install-deps.sh installs prometheus)"
fi

if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
