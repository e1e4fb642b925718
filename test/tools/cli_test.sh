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
# A device or a pipe is read no further than a configuration file is (/dev/zero, read whole,
# exhausted memory), and refused before anything is measured.
expect 2 "targets file '/dev/zero' holds more than 1048576 bytes" -- bench --targets /dev/zero
expect 2 "duration" -- bench --duration soon
# Zero given explicitly is refused by name, not read as "not given" (the default).
expect 2 "--batch must be >= 1" -- bench --batch 0 --messages 10
expect 2 "--rate must be a positive number" -- bench --rate 0 --messages 10
expect 2 "--rate must be a positive number" -- bench --rate nan --messages 10
# A rate so low that the time a message is due overflows the clock was ignored (every message
# sent at once); one so high overflowed the report's figures.
expect 2 "--rate must be a positive number" -- bench --rate 1e-300 --messages 10 --no-baseline
expect 2 "--rate must be a positive number" -- bench --rate 1e300 --messages 10 --no-baseline
expect 2 "--threads must be 1 to 1024" -- bench --threads 0 --messages 10
expect 2 "--threads must be 1 to 1024" -- bench --threads 100000 --messages 10
# A negative or oversized count is refused naming its flag: not wrapped into a huge unsigned
# number (a benchmark that never ends, a vector of 2^64 producers, an error about a setting
# never given) nor overflowing a duration.
for flag in --messages --producers --consumers --send-batch --receive-batch --batch \
  --scaling-max --overhead-messages --memory-budget --handler-cost --overhead --scaling-latency \
  --sessions --session-idle-wait --session-hold; do
  others=(--no-baseline --threads 1 --scaling)
  [[ $flag == --messages ]] || others+=(--messages 10)
  for value in -1 99999999999999999999; do
    timeout 60 "$qrt" bench "${others[@]}" "$flag" "$value" >"$tmp/out" 2>"$tmp/err"
    code=$?
    [[ $code -eq 2 ]] || fail "bench $flag $value exited $code, expected 2: $(head -3 "$tmp/err")"
    grep -qF -- "$flag" "$tmp/err" || fail "bench $flag $value: error does not name it: $(cat "$tmp/err")"
  done
done
expect 2 "subcommand|frobnicate" -- frobnicate
expect 2 "/nonexistent" -- send --provider memory --queue q --body x --body-file /nonexistent
truncate -s 1100M "$tmp/huge-body"  # sparse: refused by its size, never read
expect 2 "no provider accepts a message over" -- send --provider memory --queue q \
  --body-file "$tmp/huge-body"
# A body from a stream has no size to check first: qrt reads no more of it than the provider's
# largest message (the embedded one's is 1 MiB) and refuses it, so the writer of a longer
# stream finds its reader gone long before the end.
head -c 2000M /dev/zero | "$qrt" send --provider memory --queue q --persistence-path "$tmp/stream" \
  --body-file /dev/stdin >"$tmp/out" 2>"$tmp/err"
statuses=("${PIPESTATUS[@]}")
[[ ${statuses[1]} -eq 2 ]] || fail "send --body-file of a long stream exited ${statuses[1]}: $(cat "$tmp/err")"
grep -q "holds more than 1048576 bytes, the largest message memory takes" "$tmp/err" \
  || fail "send --body-file of a long stream: $(cat "$tmp/err")"
[[ ${statuses[0]} -ne 0 ]] || fail "send --body-file read a 2000 MB stream to its end"
expect 2 "100 years" -- receive --provider memory --queue q --wait 1e300
expect 2 "100 years" -- dlq replay --provider memory --queue q --wait 1e300

# The embedded provider without persistence lives only as long as one invocation: a message
# sent would be gone when qrt exits, so every command but bench refuses it, naming the flag that
# keeps queues between commands; nothing is reported sent.
for cmd in "send --body hello" "publish --body hello" "receive --wait 0.1" "peek" "stats" \
  "dlq list" "dlq replay --wait 0.1" "process --idle-exit 0.1 --exec cat"; do
  read -ra words <<<"$cmd"
  if [[ ${words[0]} == publish ]]; then names=(--topic t); else names=(--queue q); fi
  sub=1 && [[ ${words[0]} == dlq ]] && sub=2
  expect 2 "--persistence-path DIR" -- "${words[@]:0:sub}" --provider memory "${names[@]}" \
    "${words[@]:sub}"
  [[ ! -s "$tmp/out" ]] || fail "qrt $cmd without persistence printed: $(cat "$tmp/out")"
done
expect 2 "--persistence-path DIR" -- queue create q --provider memory
# A mistake in the provider's settings is still reported as itself.
expect 2 "max_queue_size" -- stats --provider memory --queue q --set max_queue_size=abc

# Reading commands never create a queue: a mistyped name fails, naming it, and stays missing.
empty="$tmp/empty"
for cmd in "receive --wait 0.1" "peek" "stats" "dlq list" "dlq replay --wait 0.1"; do
  read -ra words <<<"$cmd"
  expect 1 "queue_not_found: queue 'typo' does not exist" -- "${words[@]}" --provider memory \
    --queue typo --persistence-path "$empty"
done
expect 1 "'typo' does not exist" -- stats --provider memory --queue typo --persistence-path "$empty"

# `queue create` makes one (and keeps an existing one); `queue delete` removes it.
expect 0 "created queue q" -- queue create q --provider memory --persistence-path "$empty"
expect 0 "created queue q" -- queue create q --provider memory --persistence-path "$empty"
expect 0 "created queue gone" -- queue create gone --provider memory --persistence-path "$empty"
expect 0 "deleted queue gone" -- queue delete gone --provider memory --persistence-path "$empty"
# The name also as every other command takes it, --queue Q (and --topic T); one of the two.
expect 0 "created queue flagged" -- queue create --queue flagged --provider memory --persistence-path "$empty"
expect 0 "deleted queue flagged" -- queue delete --queue flagged --provider memory --persistence-path "$empty"
expect 2 "--queue is required" -- queue create --provider memory --persistence-path "$empty"
expect 1 "'gone' does not exist" -- stats --provider memory --queue gone --persistence-path "$empty"
expect 2 "invalid queue name" -- queue create 'a/b' --provider memory --persistence-path "$empty"

# Commands on an empty queue.
expect_quiet receive --provider memory --queue q --wait 0.1 --output json --persistence-path "$empty"
expect 0 "no messages" -- receive --provider memory --queue q --wait 0.1 --persistence-path "$empty"
expect 0 '"active":0' -- stats --provider memory --queue q --output json --persistence-path "$empty"
expect_quiet peek --provider memory --queue q --persistence-path "$empty"
expect_quiet dlq list --provider memory --queue q --persistence-path "$empty"
expect 0 "replayed 0" -- dlq replay --provider memory --queue q --wait 0.1 --persistence-path "$empty"

# The persisted embedded provider: one process sends, later ones read the same directory.
expect 0 '^\{"id":"' -- send --provider memory --queue q --body persisted --attribute k=v \
  --persistence-path "$tmp/log" --output json
expect 0 '"body_base64":"cGVyc2lzdGVk","attributes":\{"k":"v"\}.*"delivery_count":0' -- \
  peek --provider memory --queue q --persistence-path "$tmp/log" --output json
expect 0 '"active":1' -- stats --provider memory --queue q --persistence-path "$tmp/log" --output json
# A negative --from-sequence names no message: it was read as 0 and showed the oldest ones.
expect 2 "--from-sequence must be 0 .the oldest. or more, got -5" -- \
  peek --provider memory --queue q --persistence-path "$tmp/log" --from-sequence -5
# It is a usage error, refused before the provider is built and naming the flag; the client's
# own refusal of it names its parameter and comes only after what building refuses (here the
# embedded provider without --persistence-path), so both checks stay.
expect 2 "--from-sequence must be 0 .the oldest. or more, got -1" -- \
  peek --provider memory --queue q --from-sequence -1
expect 0 '"attributes":\{"k":"v"\}' -- receive --provider memory --queue q --wait 1 \
  --persistence-path "$tmp/log" --durability interval --output json
expect 0 '"active":0' -- stats --provider memory --queue q --persistence-path "$tmp/log" --output json
expect_quiet dlq list --provider memory --queue q --persistence-path "$tmp/log"
expect 2 "durability" -- send --provider memory --queue q --body x --persistence-path "$tmp/log" \
  --durability sometimes

# Output that cannot be written (stdout on a full disk): nothing is completed or moved that was
# not reported, the command exits 1 with one line saying why, and the messages are still there.
full="$tmp/full"
for body in one two three; do
  "$qrt" send --provider memory --queue q --body "$body" --persistence-path "$full" >/dev/null \
    || fail "send $body to $full"
done
"$qrt" receive --provider memory --queue q --max 3 --wait 1 --persistence-path "$full" \
  >/dev/full 2>"$tmp/err"
code=$?
[[ $code -eq 1 ]] || fail "receive >/dev/full exited $code, expected 1"
grep -q "cannot write the output: No space left on device" "$tmp/err" \
  || fail "receive >/dev/full: $(cat "$tmp/err")"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "receive >/dev/full: not one line: $(cat "$tmp/err")"
expect 0 '"active":3,"in_flight":0' -- stats --provider memory --queue q --persistence-path "$full" \
  --output json
# dlq replay: a queue whose messages go to the DLQ after one delivery; the receive that cannot
# write abandons them, which moves them there.
dlq="$tmp/dlq"
for body in one two; do
  "$qrt" send --provider memory --queue d --body "$body" --persistence-path "$dlq" \
    --set max_delivery_count=1 >/dev/null || fail "send $body to $dlq"
done
"$qrt" receive --provider memory --queue d --max 2 --wait 1 --persistence-path "$dlq" >/dev/full 2>/dev/null
expect 0 '"active":0,"in_flight":0,"scheduled":0,"dead_lettered":2' -- stats --provider memory \
  --queue d --persistence-path "$dlq" --output json
"$qrt" dlq replay --provider memory --queue d --persistence-path "$dlq" >/dev/full 2>"$tmp/err"
code=$?
[[ $code -eq 1 ]] || fail "dlq replay >/dev/full exited $code, expected 1"
grep -q "cannot write the output" "$tmp/err" || fail "dlq replay >/dev/full: $(cat "$tmp/err")"
# The first message was moved (its report was what failed); the second was not touched.
expect 0 '"active":1,"in_flight":0,"scheduled":0,"dead_lettered":1' -- stats --provider memory \
  --queue d --persistence-path "$dlq" --output json
# A reader that goes away (`qrt receive | head`) is output that cannot be written too: qrt says
# so and exits 1, rather than dying of SIGPIPE with what it had not written still locked (on a
# service, out of reach until the lock expires). Three bodies larger than a pipe's buffer, so
# the writes after head has gone fail whatever the timing.
gone="$tmp/gone"
head -c 100000 /dev/zero | tr '\0' a >"$tmp/big-body"
"$qrt" send --provider memory --queue q --body-file "$tmp/big-body" --count 3 \
  --persistence-path "$gone" >/dev/null || fail "send 3 to $gone"
"$qrt" receive --provider memory --queue q --max 3 --wait 1 --persistence-path "$gone" \
  2>"$tmp/err" | head -c 10 >/dev/null
code=${PIPESTATUS[0]}
[[ $code -eq 1 ]] || fail "receive | head exited $code, expected 1: $(cat "$tmp/err")"
grep -q "cannot write the output: Broken pipe" "$tmp/err" || fail "receive | head: $(cat "$tmp/err")"
expect 0 '"active":3,"in_flight":0' -- stats --provider memory --queue q --persistence-path "$gone" \
  --output json
# A closed stdout (`>&-`) cannot be written either; the store's files, opened later, must not
# take its place and receive the output: the messages would be completed with their text
# written into the store's lock file.
shut="$tmp/shut"
"$qrt" send --provider memory --queue q --body hello --count 2 --persistence-path "$shut" \
  >/dev/null || fail "send 2 to $shut"
"$qrt" receive --provider memory --queue q --max 2 --wait 1 --persistence-path "$shut" \
  >&- 2>"$tmp/err"
code=$?
[[ $code -eq 1 ]] || fail "receive >&- exited $code, expected 1: $(cat "$tmp/err")"
grep -q "cannot write the output: Bad file descriptor" "$tmp/err" || fail "receive >&-: $(cat "$tmp/err")"
expect 0 '"active":2,"in_flight":0' -- stats --provider memory --queue q --persistence-path "$shut" \
  --output json
if grep -q hello "$shut/LOCK"; then fail "receive >&- wrote a message into the store's LOCK file"; fi
# A closed stdin is still no body: --body-file /dev/stdin is refused, nothing is sent.
expect 2 "/dev/stdin" -- send --provider memory --queue q --persistence-path "$shut" \
  --body-file /dev/stdin <&-
expect 0 '"active":2,"in_flight":0' -- stats --provider memory --queue q --persistence-path "$shut" \
  --output json
"$qrt" send --provider memory --queue q --body x --count 100000 --persistence-path "$gone" \
  --durability none \
  2>"$tmp/err" | head -c 10 >/dev/null
code=${PIPESTATUS[0]}
[[ $code -eq 1 ]] || fail "send | head exited $code, expected 1: $(cat "$tmp/err")"
grep -q "cannot write the output: Broken pipe" "$tmp/err" || fail "send | head: $(cat "$tmp/err")"

# Text output cannot drive the terminal: control characters of bodies and attributes are escaped.
"$qrt" send --provider memory --queue e --persistence-path "$tmp/esc" --body $'a\e[2Jb\rc' \
  --attribute $'k=v\e]0;owned\a' >/dev/null || fail "send with control characters"
"$qrt" receive --provider memory --queue e --persistence-path "$tmp/esc" --wait 1 >"$tmp/out" 2>&1
if grep -q $'[\e\r\a]' "$tmp/out"; then fail "text output kept control characters: $(od -c "$tmp/out")"; fi
grep -qF 'k=v\x1b]0;owned\x07' "$tmp/out" || fail "attribute not escaped: $(cat "$tmp/out")"
grep -qF 'a\x1b[2Jb\rc' "$tmp/out" || fail "body not escaped: $(cat "$tmp/out")"

# Topics and subscriptions on the persisted embedded provider, one process per step: a topic,
# two subscriptions (one filtered), publishes, and each subscription read as a queue.
t="$tmp/topics"
mem=(--provider memory --persistence-path "$t")
expect 0 "created topic events" -- topic create events "${mem[@]}"
expect 0 "created subscription events/Subscriptions/all" -- subscription create "${mem[@]}" \
  --topic events --subscription all
expect 0 "created subscription" -- subscription create "${mem[@]}" --topic events \
  --subscription eu --filter-attribute region=eu --filter-subject order
expect 0 '^\{"subscription":"all","topic":"events","attributes":\{\}\}$' -- subscription list \
  "${mem[@]}" --topic events --output json
expect 0 '"subscription":"eu".*"region":"eu".*"subject":"order"' -- subscription list \
  "${mem[@]}" --topic events --output json
expect 0 '^published ' -- publish "${mem[@]}" --topic events --body eu-order --subject order \
  --attribute region=eu --content-type text/plain
expect 0 '^\{"id":"' -- publish "${mem[@]}" --topic events --body us-order --subject order \
  --attribute region=us --output json
expect 0 '^published ' -- publish "${mem[@]}" --topic events --body eu-other --attribute region=eu
expect 0 '"queue":"events/Subscriptions/all","active":3' -- stats "${mem[@]}" --topic events \
  --subscription all --output json
expect 0 '"active":1' -- stats "${mem[@]}" --topic events --subscription eu --output json
expect 0 '"body_base64":"ZXUtb3JkZXI=".*"subject":"order"' -- receive "${mem[@]}" --topic events \
  --subscription eu --wait 1 --output json
expect 0 '"active":0' -- stats "${mem[@]}" --topic events --subscription eu --output json
# A receive whose output cannot be written completes nothing: the messages stay.
"$qrt" receive "${mem[@]}" --topic events --subscription all --max 3 --wait 1 >/dev/full 2>/dev/null
expect 0 '"active":3,"in_flight":0' -- stats "${mem[@]}" --topic events --subscription all \
  --output json
expect 0 ' subject=order content_type=text/plain region=eu' -- peek "${mem[@]}" --topic events \
  --subscription all --max 1
expect 0 '"body_base64":"ZXUtb3JkZXI="' -- receive "${mem[@]}" --topic events --subscription all \
  --wait 1 --output json
expect 0 '"active":2' -- stats "${mem[@]}" --topic events --subscription all --output json
expect_quiet dlq list "${mem[@]}" --topic events --subscription all
expect 2 "cannot send into a subscription" -- dlq replay "${mem[@]}" --topic events \
  --subscription all --wait 0.1
expect 0 "for 2 deliveries: 2 completed, 0 failed" -- process "${mem[@]}" --topic events --subscription all \
  --exec 'cat >/dev/null' --max-messages 2 --idle-exit 5
expect 0 '"active":0' -- stats "${mem[@]}" --topic events --subscription all --output json
# --max-messages N takes N messages from the queue and no more: with fast commands and a deep
# queue, the rest stay there, none of them ever delivered (their delivery count still 0).
w="$tmp/worker"
"$qrt" send --provider memory --queue w --body job --count 50 --persistence-path "$w" >/dev/null \
  || fail "send 50 to $w"
for n_and_concurrency in "1 1" "3 4"; do
  read -r n concurrency <<<"$n_and_concurrency"
  expect 0 "for $n deliveries: $n completed" -- process --provider memory --queue w \
    --persistence-path "$w" --exec 'cat >/dev/null' --max-messages "$n" --concurrency "$concurrency"
done
expect 0 '"active":46,"in_flight":0' -- stats --provider memory --queue w --persistence-path "$w" \
  --output json
"$qrt" peek --provider memory --queue w --persistence-path "$w" --max 100 --output json >"$tmp/out" \
  || fail "peek $w"
[[ $(grep -c '"delivery_count":0' "$tmp/out") -eq 46 ]] \
  || fail "--max-messages delivered messages it did not handle: $(grep -vc '"delivery_count":0' "$tmp/out")"

# A run whose commands failed exits 3 and counts deliveries, not messages: one message whose
# command failed three times is three failed deliveries; the message stays in the queue.
"$qrt" send --provider memory --queue failing --body job --persistence-path "$w" >/dev/null \
  || fail "send 1 to failing"
"$qrt" process --provider memory --queue failing --persistence-path "$w" --max-messages 3 \
  --exec 'cat >/dev/null; exit 7' >"$tmp/out" 2>"$tmp/err"
code=$?
[[ $code -eq 3 ]] || fail "process whose commands all failed exited $code, expected 3: $(cat "$tmp/err")"
grep -q "for 3 deliveries: 0 completed, 3 failed" "$tmp/err" \
  || fail "process whose commands all failed: $(cat "$tmp/err")"
expect 0 '"active":1,"in_flight":0' -- stats --provider memory --queue failing \
  --persistence-path "$w" --output json

# --abandon-delay holds a failed message before giving it back: the command's second run on it
# starts no sooner than that after the first ended (a lower bound, which a slow machine keeps).
"$qrt" send --provider memory --queue held --body job --persistence-path "$w" >/dev/null \
  || fail "send 1 to held"
"$qrt" process --provider memory --queue held --persistence-path "$w" --max-messages 2 \
  --abandon-delay 0.5 --exec "cat >/dev/null; date +%s%N >>'$tmp/runs'; exit 1" 2>/dev/null
mapfile -t runs <"$tmp/runs"
[[ ${#runs[@]} -eq 2 ]] || fail "process --abandon-delay: expected 2 runs, got ${#runs[@]}"
(( runs[1] - runs[0] >= 500000000 )) \
  || fail "process --abandon-delay 0.5 reran the command after $(( (runs[1] - runs[0]) / 1000000 )) ms"
# An error that quotes what came from outside (a flag here; a server's text alike) shows its
# control bytes escaped: it cannot drive the terminal or forge a log line.
"$qrt" stats --provider memory --queue q --set preset=$'\x1b[31mred\nqrt: forged' \
  >"$tmp/out" 2>"$tmp/err"
grep -q $'\x1b' "$tmp/err" && fail "an error printed a raw escape byte: $(od -c "$tmp/err" | head -3)"
grep -qF '\x1b[31mred\nqrt: forged' "$tmp/err" || fail "the refused value is not shown escaped: $(cat "$tmp/err")"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "an error's text made more than one line: $(cat "$tmp/err")"

# A count of 0 (or one that does not fit) is refused, not taken as "no limit": a worker started
# with --max-messages 0 would otherwise drain the queue.
for value in 0 -1 99999999999999999999; do
  for flag in --max-messages --concurrency; do
    "$qrt" process --provider memory --queue held --persistence-path "$w" --exec true \
      "$flag" "$value" >"$tmp/out" 2>"$tmp/err"
    code=$?
    [[ $code -eq 2 ]] || fail "process $flag $value exited $code, expected 2: $(cat "$tmp/err")"
  done
done
for flag in --abandon-delay --idle-exit; do
  expect 2 "$flag must be a number of seconds" -- process --provider memory --queue held \
    --persistence-path "$w" --exec true "$flag" -1
done

# process runs one command at a time unless told otherwise: no two of these overlap.
"$qrt" send --provider memory --queue one --body job --count 4 --persistence-path "$w" >/dev/null \
  || fail "send 4 to one"
expect 0 "for 4 deliveries: 4 completed" -- process --provider memory --queue one \
  --persistence-path "$w" --max-messages 4 \
  --exec "mkdir '$tmp/running' || echo overlap >>'$tmp/overlaps'; sleep 0.2; rmdir '$tmp/running'"
[[ ! -e "$tmp/overlaps" ]] || fail "process ran commands side by side without --concurrency"
# --idle-exit counts from the end of the last command, not through a command still running.
"$qrt" send --provider memory --queue slow --body job --count 2 --persistence-path "$w" >/dev/null \
  || fail "send 2 to slow"
expect 0 "for 2 deliveries: 2 completed" -- process --provider memory --queue slow \
  --persistence-path "$w" --idle-exit 0.5 --exec 'sleep 1'
# A worker that can never receive stops at once with one line, not retrying forever to exit 0
# at the end: here a queue that wants sessions, which process does not take.
timeout 60 "$qrt" process --provider memory --queue grouped --persistence-path "$w" \
  --set requires_session=true --exec cat --idle-exit 30 >"$tmp/out" 2>"$tmp/err"
code=$?
[[ $code -eq 2 ]] || fail "process on a session queue exited $code, expected 2: $(cat "$tmp/err")"
grep -q "requires sessions" "$tmp/err" || fail "process on a session queue: $(cat "$tmp/err")"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "process on a session queue: not one line: $(cat "$tmp/err")"

# A flag given an empty value (an unset variable in a script) is refused naming it, not taken
# as "not given": an empty --endpoint would go to the provider's default endpoint, an empty
# --session would read and complete every session's messages.
"$qrt" send "${mem[@]}" --queue plain --body one >/dev/null || fail "send to plain"
for flag in --endpoint --region --connection-string --durability --session; do
  expect 2 "$flag.*must not be empty" -- receive "${mem[@]}" --queue plain --wait 0.1 "$flag" ''
done
expect 2 "--session.*must not be empty" -- send "${mem[@]}" --queue plain --body two --session ''
expect 2 "--persistence-path.*must not be empty" -- stats --provider memory --queue plain \
  --persistence-path ''
expect 0 '"active":1,"in_flight":0' -- stats "${mem[@]}" --queue plain --output json

# Exactly one of --queue Q or --topic T --subscription S.
expect 2 "exactly one of --queue" -- receive "${mem[@]}" --queue q --topic events --subscription all
expect 2 "exactly one of --queue" -- stats "${mem[@]}"
expect 2 "go together" -- peek "${mem[@]}" --topic events
expect 2 "go together" -- receive "${mem[@]}" --subscription all
expect 2 "needs --body" -- publish "${mem[@]}" --topic events
expect 2 "topic" -- publish "${mem[@]}" --body x
# Deleting: the subscription, then the topic; what is gone says so.
expect 0 "deleted subscription" -- subscription delete "${mem[@]}" --topic events --subscription eu
expect 1 "queue_not_found" -- receive "${mem[@]}" --topic events --subscription eu --wait 0.1
expect 0 "^all  \(every message\)$" -- subscription list "${mem[@]}" --topic events
expect 0 "deleted topic events" -- topic delete events "${mem[@]}"
expect 0 "created topic flagged" -- topic create --topic flagged "${mem[@]}"
expect 0 "deleted topic flagged" -- topic delete --topic flagged "${mem[@]}"
expect 1 "topic_not_found" -- publish "${mem[@]}" --topic events --body x
expect 1 "topic_not_found" -- subscription list "${mem[@]}" --topic events
expect 1 "topic_not_found" -- subscription create "${mem[@]}" --topic events --subscription s

# The environment is shared with other tools: an unknown QRT_* variable is ignored with one
# warning naming it (not its value); the same unknown key as a flag is still an error.
QRT_DEPLOY_REVISION=value-not-to-print "$qrt" send --provider memory --queue q --body x \
  --persistence-path "$empty" >"$tmp/out" 2>"$tmp/err" || fail "an unknown QRT_* variable made send fail: $(cat "$tmp/err")"
grep -q "QRT_DEPLOY_REVISION" "$tmp/err" || fail "no warning naming QRT_DEPLOY_REVISION"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "expected one warning line: $(cat "$tmp/err")"
if grep -q "value-not-to-print" "$tmp/err"; then fail "the warning shows the value"; fi
expect 2 "deploy_revision" -- send --provider memory --queue q --body x --set deploy_revision=1

# Provider from a config file and from the environment.
printf 'provider: memory\nmax_queue_size: 50\nenable_persistence: true\npersistence_path: %s\n' \
  "$tmp/from-file" >"$tmp/cfg.yaml"
expect 0 "sent" -- send --config "$tmp/cfg.yaml" --queue q --body hi
expect 0 '"active":1' -- stats --config "$tmp/cfg.yaml" --queue q --output json
QRT_PROVIDER=memory QRT_ENABLE_PERSISTENCE=true QRT_PERSISTENCE_PATH="$tmp/from-env" \
  expect 0 "sent" -- send --queue q --body hi
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
# What would fail only after the main run (a report directory that cannot be made, a scaling
# latency the scaling run cannot measure with, a memory budget for another provider) is refused
# before it: nothing is measured, no table printed, and no run is lost for a setting.
touch "$tmp/a-file"
expect 2 "a-file/report" -- bench --messages 1000 --threads 1 --no-baseline --report-dir "$tmp/a-file/report"
[[ ! -s "$tmp/out" ]] || fail "bench ran before refusing its report directory: $(head -3 "$tmp/out")"
for latency in 0 750; do
  expect 2 "--scaling-latency" -- bench --messages 1000 --threads 1 --no-baseline --scaling --scaling-latency "$latency"
  [[ ! -s "$tmp/out" ]] || fail "bench --scaling-latency $latency ran: $(head -3 "$tmp/out")"
done
# An overhead run whose prefill could not be held is refused before the main run too.
expect 2 "--overhead-messages" -- bench --messages 10 --threads 1 --no-baseline --overhead 1 \
  --overhead-messages 1000 --size 16777216
[[ ! -s "$tmp/out" ]] || fail "bench --overhead-messages 1000 --size 16777216 ran: $(head -3 "$tmp/out")"
# A scaling run whose prefill could not be held is refused before the main run, not after it.
expect 2 "would prefill" -- bench --messages 1000 --threads 1 --no-baseline --scaling \
  --receive-batch 1000000
[[ ! -s "$tmp/out" ]] || fail "bench --scaling --receive-batch 1000000 ran: $(head -3 "$tmp/out")"
# Session mode: order and accept latency reported; a provider without sessions (AMQP 1.0) is
# refused naming it before anything runs, and a body too small for the sequence numbers too.
expect 0 "sessions 4: accepted [0-9]+, .* order violations 0" -- bench --sessions 4 --consumers 2 \
  --messages 2000 --threads 1 --no-baseline
grep -q "session accept call" "$tmp/out" || fail "bench --sessions: no accept latency: $(cat "$tmp/out")"
expect 1 "provider 'amqp' has none" -- bench --provider amqp --endpoint amqp://127.0.0.1:1 \
  --sessions 4 --messages 10 --no-baseline
[[ ! -s "$tmp/out" ]] || fail "bench --sessions on amqp ran: $(head -3 "$tmp/out")"
expect 2 "at least 40 bytes with sessions" -- bench --sessions 2 --size 20 --messages 10
expect 2 "--memory-budget is for the embedded provider" -- bench --provider amqp \
  --endpoint amqp://127.0.0.1:1 --messages 10 --memory-budget 1048576
# An outage that is no duration, none at all or one past an hour is refused before the main run.
for outage in 0s 2h soon; do
  expect 2 "--outage '$outage' is not a duration" -- bench --messages 1000 --threads 1 \
    --no-baseline --outage "$outage"
  [[ ! -s "$tmp/out" ]] || fail "bench --outage $outage ran: $(head -3 "$tmp/out")"
done
# More overhead messages than the overhead run's queue can be made to hold is refused by its
# flag before anything runs, not after the main run by a setting never given (max_queue_size).
expect 2 "--overhead-messages" -- bench --messages 1000 --threads 1 --no-baseline --overhead 1 \
  --overhead-messages 600000000
[[ ! -s "$tmp/out" ]] || fail "bench --overhead-messages 600000000 ran: $(head -3 "$tmp/out")"
grep -q "max_queue_size" "$tmp/err" && fail "--overhead-messages refused by a setting never given"
# A max_queue_size below what the scaling or overhead run holds on its queue at once (its
# prefill) was taken, and that run then waited out the send timeout for room, after the main run.
# It is refused before the main run, naming the setting, its value and what the run needs.
expect 2 "max_queue_size 5 is below the [0-9]+ messages the scaling run" -- bench --messages 100 \
  --threads 1 --no-baseline --scaling --set max_queue_size=5
[[ ! -s "$tmp/out" ]] || fail "bench --scaling --set max_queue_size=5 ran: $(head -3 "$tmp/out")"
expect 2 "max_queue_size 5 is below the 2000 messages the overhead run" -- bench --messages 100 \
  --threads 1 --no-baseline --overhead 1 --set max_queue_size=5
[[ ! -s "$tmp/out" ]] || fail "bench --overhead 1 --set max_queue_size=5 ran: $(head -3 "$tmp/out")"
# A command that partly succeeded: an extra run that fails after the main run (here the
# overhead run's prefill, refused by a max_queue_bytes the queue meets only when it fills) keeps
# what was measured. The table goes to stdout and the report is written; then the error, one
# line on stderr after the report's, and the exit code is the error's (1), not 0.
"$qrt" bench --messages 200 --threads 1 --no-baseline --overhead 1 --set max_queue_bytes=20000 \
  --report-dir "$tmp/partial" >"$tmp/out" 2>"$tmp/err"
code=$?
[[ $code -eq 1 ]] || fail "bench with a failed overhead run exited $code, expected 1: $(cat "$tmp/err")"
grep -q "end-to-end" "$tmp/out" || fail "bench with a failed overhead run printed no table: $(cat "$tmp/out")"
grep -q "overhead run failed" "$tmp/out" && fail "bench printed its error on stdout: $(cat "$tmp/out")"
[[ $(wc -l <"$tmp/err") -eq 2 ]] || fail "bench with a failed overhead run: stderr is not 2 lines: $(cat "$tmp/err")"
grep -q "^qrt: report written to $tmp/partial/report.json" <(head -1 "$tmp/err") \
  || fail "bench with a failed overhead run: no report line first: $(cat "$tmp/err")"
grep -qE "^qrt: queue_full: the overhead run failed \(the figures measured before it are kept\): .*max_queue_bytes" \
  <(tail -1 "$tmp/err") || fail "bench with a failed overhead run: error not last: $(cat "$tmp/err")"
grep -q '"messages":200' "$tmp/partial/report.json" \
  || fail "the report of a run whose overhead run failed lacks the main run: $(head -c 300 "$tmp/partial/report.json")"
grep -q '"overhead":' "$tmp/partial/report.json" && fail "the failed overhead run left figures in the report"
# --queue may name a user's queue (here in a persisted store): one that holds messages was
# drained by the run, every message received and completed. It is refused, saying how many it
# holds, and the message stays.
expect 0 "" -- send --provider memory --queue users --body "keep me" --persistence-path "$tmp/users"
expect 2 "queue 'users' already holds 1 message \(1 ready" -- bench --provider memory \
  --persistence-path "$tmp/users" --queue users --messages 100 --threads 1 --no-baseline
[[ ! -s "$tmp/out" ]] || fail "bench on a queue holding a message ran: $(head -3 "$tmp/out")"
expect 0 "keep me" -- peek --provider memory --queue users --persistence-path "$tmp/users"
# A memory budget that cannot hold a single message (256 bytes, 768 with the embedded provider's
# bookkeeping) was taken, and its run failed only after the main run: refused before it now,
# naming both figures, with nothing measured and no report directory left behind.
expect 2 "--memory-budget 767 bytes cannot hold a single message of --size 256 bytes" -- \
  bench --messages 1000 --threads 1 --no-baseline --memory-budget 767 --report-dir "$tmp/kept"
[[ ! -s "$tmp/out" ]] || fail "bench --memory-budget 767 ran: $(head -3 "$tmp/out")"
[[ ! -e "$tmp/kept" ]] || fail "a refused memory budget left a report directory"
# The report directory is made before the run; a run that then fails leaves none behind.
expect 2 "message size" -- bench --size 8 --messages 10 --report-dir "$tmp/failed-run/report"
[[ ! -e "$tmp/failed-run/report" ]] || fail "a failed bench run left an empty report directory"
expect 3 "target was missed" -- bench --messages 1000 --threads 1 --no-baseline --targets "$tmp/targets.yaml" --environment production --fail-on-miss
expect 0 '"end_to_end_msgs_per_s"' -- bench --messages 1000 --threads 1 --no-baseline --output json

# bench compare: side by side; exit 4 on a regression only with --fail-on-regression; bad input
# is exit 2 with one line naming the file (and the field).
expect 0 "no figure regressed" -- bench compare "$tmp/report/report.json" "$tmp/report" --out "$tmp/cmp"
[[ -s "$tmp/cmp/compare.html" ]] || fail "bench compare --out did not write compare.html"
sed -E 's/"end_to_end_msgs_per_s":[^,]+/"end_to_end_msgs_per_s":1/' "$tmp/report/report.json" >"$tmp/slow.json"
expect 0 "REGRESSED \(lower is worse\)" -- bench compare "$tmp/report/report.json" "$tmp/slow.json"
expect 4 "regressed" -- bench compare "$tmp/report/report.json" "$tmp/slow.json" --fail-on-regression
expect 0 "better" -- bench compare "$tmp/slow.json" "$tmp/report/report.json" --fail-on-regression
expect 2 "/nonexistent/report.json" -- bench compare /nonexistent/report.json "$tmp/slow.json"
expect 2 "/dev/zero' holds more than" -- bench compare /dev/zero "$tmp/slow.json"
echo '{"name": "not a report"}' >"$tmp/other.json"
expect 2 "other.json: not a qrt bench report" -- bench compare "$tmp/other.json" "$tmp/slow.json"
echo 'not json' >"$tmp/text.json"
expect 2 "text.json: not JSON" -- bench compare "$tmp/slow.json" "$tmp/text.json"
sed -E 's/"p99":[^,]+,//' "$tmp/report/report.json" >"$tmp/no-p99.json"
expect 2 "no-p99.json: field 'e2e_latency_us.p99' is missing" -- bench compare "$tmp/no-p99.json" "$tmp/slow.json"
expect 2 "threshold" -- bench compare "$tmp/slow.json" "$tmp/slow.json" --threshold -5

# bench --metrics: the instrumented run's exposition, accepted by promtool.
expect 0 "" -- bench --messages 1000 --threads 1 --no-baseline --metrics --report-dir "$tmp/m"
grep -q '^queue_runtime_messages_processed_total{queue="qrt-bench",provider="memory",outcome="completed"} 1000$' "$tmp/m/metrics.prom" \
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
