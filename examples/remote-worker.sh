#!/bin/sh
# A tqd remote worker in POSIX shell with curl (no Python, no jq).
#
#   examples/remote-worker.sh QUEUE COMMAND [ARG...]
#
# Leases one task at a time from the remote queue QUEUE (long-polling), runs
# COMMAND with the task's JSON ({"id", "name", "payload", "attempts", ...})
# on stdin, and reports how it went:
#   exit 0      completed; stdout must be one JSON value (an object, a
#               number, "a string", ...): it becomes the task's result;
#   any other   failed with "exit N: <last line of stderr>", tried again
#               while attempts remain (exit 75, EX_TEMPFAIL, by convention).
# While COMMAND runs, a heartbeat keeps the lease every HEARTBEAT seconds.
# A lease that is lost meanwhile (the task was cancelled) is not noticed
# until the end: the server then refuses the outcome.
#
# Environment: TQD_URL (default http://127.0.0.1:7411), TQD_TOKEN (bearer
# token, if the server wants one; it never appears in a command line),
# TQD_WORKER (name shown in the tasks' worker field), WAIT (long-poll
# seconds, default 20), HEARTBEAT (seconds, default 10), VISIBILITY (lease
# seconds; default: the task's own). SIGTERM or SIGINT stops it after the
# task in hand, or when the lease request in flight returns (within WAIT s).

set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 QUEUE COMMAND [ARG...]" >&2
  exit 2
fi
queue=$1
shift
url=${TQD_URL:-http://127.0.0.1:7411}
wait=${WAIT:-20}
beat=${HEARTBEAT:-10}
worker=${TQD_WORKER:-$(uname -n)-sh-$$}
lease_extra=""
if [ -n "${VISIBILITY:-}" ]; then
  lease_extra=", \"visibility_timeout\": $VISIBILITY"
fi

scratch=$(mktemp -d) || exit 1
trap 'rm -rf "$scratch"' EXIT
stop=0
trap 'stop=1' TERM INT

# post PATH [curl options...]: POST the JSON on stdin, print the HTTP status.
# The token goes to curl through a config on fd 3, not through argv.
post() {
  path=$1
  shift
  curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- \
    -w '%{http_code}' -K /dev/fd/3 "$@" "$url$path" 3<<END
${TQD_TOKEN:+header = "Authorization: Bearer $TQD_TOKEN"}
END
}

# A string as the inside of a JSON string: escape \ and ", drop control characters.
json_text() {
  tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g'
}

report_failure() {  # report_failure ID TOKEN MESSAGE
  message=$(printf '%s' "$3" | json_text)
  printf '{"token": "%s", "error": "%s", "retry": true}' "$2" "$message" |
    post "/v1/tasks/$1/fail" -o /dev/null >/dev/null
}

while [ "$stop" = 0 ]; do
  status=$(printf '{"max": 1, "wait": %s, "worker": "%s"%s}' "$wait" "$worker" "$lease_extra" |
    post "/v1/queues/$queue/lease" -o "$scratch/lease" --max-time $((wait + 30))) || {
    sleep 1
    continue
  }
  case $status in
    200) ;;
    4*) echo "remote-worker: lease refused ($status): $(cat "$scratch/lease")" >&2; exit 1 ;;
    *) sleep 1; continue ;;
  esac
  body=$(cat "$scratch/lease")
  case $body in *'"tasks":[]'*) continue ;; esac
  # tqd writes compact JSON: the task's id comes first, its lease last.
  id=$(printf '%s' "$body" | sed -n 's/^{"tasks":\[{"id":"\([^"]*\)".*/\1/p')
  token=$(printf '%s' "$body" | sed -n 's/.*"lease":{"token":"\([^"]*\)".*/\1/p')
  printf '%s' "$body" | sed 's/^{"tasks":\[//; s/\]}$//' >"$scratch/task"

  (
    while sleep "$beat"; do
      printf '{"token": "%s"}' "$token" | post "/v1/tasks/$id/heartbeat" -o /dev/null >/dev/null
    done
  ) &
  heart=$!
  "$@" <"$scratch/task" >"$scratch/out" 2>"$scratch/err"
  code=$?
  # KILL, not TERM: a TERM that lands before the heartbeat subshell dropped
  # this shell's trap would be caught there and ignored. (Its last sleep
  # ends by itself.)
  kill -KILL "$heart" 2>/dev/null
  wait "$heart" 2>/dev/null

  if [ "$code" -eq 0 ]; then
    [ -s "$scratch/out" ] || echo null >"$scratch/out"
    status=$({ printf '{"token": "%s", "result": ' "$token"; cat "$scratch/out"; printf '}'; } |
      post "/v1/tasks/$id/complete" -o "$scratch/answer")
    if [ "$status" = 400 ]; then
      report_failure "$id" "$token" "the command's stdout is not one JSON value"
    elif [ "$status" != 200 ]; then
      echo "remote-worker: task $id: complete answered $status: $(cat "$scratch/answer")" >&2
    fi
  else
    report_failure "$id" "$token" "exit $code: $(tail -n 1 "$scratch/err")"
  fi
done
