#!/usr/bin/env bash
# Start benchmark: how long a server takes from exec to answering /_nimbus/health on a
# fresh data dir (its idle memory once up), next to the same binary printing its
# version (the floor: loading the program); and the first invoke of a python
# function right after a restart, next to another function's first invoke a moment
# later (a cold start with nothing left to find), both as the client times them.
#
#   bench/start.sh
#   BENCH_ROUNDS=9 bench/start.sh
#   BENCH_BEFORE=/path/to/an/older/nimbus bench/start.sh   # side by side with another build
bench=start.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
starts=${BENCH_ROUNDS:-5}

build

now_ms() { date +%s%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) / 1000000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Two python functions, made once.
cat >"$tmp/make.py" <<'PY'
import configparser
import io
import sys
import zipfile

import boto3

keys = configparser.ConfigParser()
keys.read(sys.argv[1])
lam = boto3.client("lambda", endpoint_url=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id=keys["nimbus"]["aws_access_key_id"],
                   aws_secret_access_key=keys["nimbus"]["aws_secret_access_key"])
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as archive:
    entry = zipfile.ZipInfo("app.py")
    entry.external_attr = 0o644 << 16
    archive.writestr(entry, "def handler(event, context):\n    return {'ok': True}\n")
for name in ("first", "later"):
    lam.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/bench",
                        Handler="app.handler", Code={"ZipFile": code.getvalue()})
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
PY
# Each invoked in turn, at once: their times in ms on one line.
cat >"$tmp/invoke.py" <<'PY'
import configparser
import sys
import time

import boto3

keys = configparser.ConfigParser()
keys.read(sys.argv[1])
lam = boto3.client("lambda", endpoint_url=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id=keys["nimbus"]["aws_access_key_id"],
                   aws_secret_access_key=keys["nimbus"]["aws_secret_access_key"])
lam.list_functions()  # the client's own first request (connection, signing) out of the way
times = []
for name in ("first", "later"):
    started = time.perf_counter()
    answer = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()
    times.append(f"{(time.perf_counter() - started) * 1000:.1f}")
print(" ".join(times))
PY

# measure NIMBUS LABEL: one binary's figures, in $tmp/LABEL.*.
measure() {
    local nimbus=$1 label=$2 port data pid t0 t1
    for _ in $(seq "$starts"); do
        t0=$(now_ms)
        "$nimbus" --version >/dev/null
        t1=$(now_ms)
        elapsed "$t0" "$t1"
    done >"$tmp/$label.floor"

    port=$(free_port)
    for _ in $(seq "$starts"); do
        data=$(mktemp -d "$tmp/fresh.XXXXXX")
        t0=$(now_ms)
        "$nimbus" server --data-dir "$data" --listen "127.0.0.1:$port" >/dev/null 2>"$data.log" &
        pid=$!
        until curl -fs -o /dev/null "http://127.0.0.1:$port/_nimbus/health"; do sleep 0.002; done
        t1=$(now_ms)
        elapsed "$t0" "$t1" >>"$tmp/$label.fresh"
        sleep 0.5
        awk '/VmRSS/ { print $2 / 1024 }' "/proc/$pid/status" >>"$tmp/$label.rss"
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
    done

    bin_nimbus=$nimbus start_nimbus
    "$python" "$tmp/make.py" "$credentials" "$nimbus_url"
    kill -TERM "$nimbus_pid"
    wait "$nimbus_pid" 2>/dev/null || true
    port=${nimbus_url##*:}
    port=${port%/}
    for _ in $(seq "$starts"); do
        "$nimbus" server --data-dir "$tmp/data" --listen "127.0.0.1:$port" >/dev/null 2>>"$tmp/$label.log" &
        pid=$!
        until curl -fs -o /dev/null "http://127.0.0.1:$port/_nimbus/health"; do sleep 0.002; done
        "$python" "$tmp/invoke.py" "$credentials" "$nimbus_url" >>"$tmp/$label.invokes"
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp/data"
}

labels=(now)
measure "$bin/nimbus" now
if [[ -n ${BENCH_BEFORE:-} ]]; then
    measure "$BENCH_BEFORE" before
    labels=(before now)
fi

floor() { median <"$tmp/$1.floor"; }
fresh() { median <"$tmp/$1.fresh"; }
rss() { median <"$tmp/$1.rss" | awk '{ printf "%.1f", $1 }'; }
first() { awk '{ print $1 }' "$tmp/$1.invokes" | median; }
later() { awk '{ print $2 }' "$tmp/$1.invokes" | median; }
row() {
    printf '%-62s' "$1"
    for label in "${labels[@]}"; do printf ' %12s' "$($2 "$label")"; done
    echo
}
printf '%-62s' ""
for label in "${labels[@]}"; do printf ' %12s' "$label"; done
echo
row "nimbus --version, ms (the program loaded and run)" floor
row "server start to healthy, fresh data dir, ms" fresh
row "  idle RSS once up, MiB" rss
row "first invoke of the first function after a restart, ms" first
row "first invoke of a second function just after, ms" later
echo "medians of $starts starts; python functions; $idle"
