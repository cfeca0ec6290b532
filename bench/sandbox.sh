#!/usr/bin/env bash
# Sandbox benchmark: cold-start time of a Rust `provided.al2023` function and a python
# function in OCI sandboxes, with the pool of pre-started sandboxes and without, per
# OCI runtime (runc, and crun when installed); next to a bare start of the same
# program outside any sandbox and a plain `<runtime> run` of it.
#
#   bench/sandbox.sh
#   BENCH_COLD=50 bench/sandbox.sh
bench=sandbox.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cold_runs=${BENCH_COLD:-30}
# Between cold starts, time for the pool to refill (it takes one sandbox start).
pause=${BENCH_PAUSE_SECS:-0.5}

((EUID == 0)) || die "sandboxes need root"
runtimes=()
for runtime in runc crun; do
    command -v "$runtime" >/dev/null && runtimes+=("$runtime")
done
((${#runtimes[@]})) || die "no OCI runtime: apt-get install runc"

build
build_rust_function
rust_binary=$target_dir/e2e-functions/release/rust_hello
export PYTHONPATH=$root/bench/py

for runtime in "${runtimes[@]}"; do
    for pool in 1 0; do
        echo "cold starts: $runtime, pool $pool..." >&2
        start_nimbus --oci-runtime "$runtime" --sandbox-pool "$pool" --lambda-keep-alive 3600
        "$python" - "$credentials" "$nimbus_url" "$rust_binary" "$cold_runs" "$pause" "$runtime" "$pool" \
            >>"$tmp/cold" <<'PY'
import sys

from lambda_bench import client, cold_invokes, deploy, functions, median, percentile

credentials_file, url, rust_binary, runs, pause, runtime, pool = sys.argv[1:]
lambda_client = client(credentials_file, url)
deployed = functions(rust_binary, ["rust", "python"])
deploy(lambda_client, deployed)
for name in deployed:
    init, total = cold_invokes(lambda_client, name, int(runs), float(pause))
    print(f"{name} {runtime}-pool-{pool} {median(total):.2f} {percentile(total, 0.99):.2f} {median(init):.2f}")
PY
        stop_nimbus
    done
done

# The references: the same programs started bare, and by a plain `<runtime> run` of
# a minimal bundle (the runtime's default spec; the host's /usr and the python
# installation read-only).
echo "references..." >&2
"$python" - "$tmp/bundle" "$cold_runs" "${runtimes[@]}" >>"$tmp/cold" <<'PY'
import json
import os
import subprocess
import sys

from lambda_bench import median, percentile, real_python, timed_runs

bundle, runs, *runtimes = sys.argv[1:]
runs = int(runs)
python = real_python()
programs = {"rust": ["/bin/true"], "python": [python, "-c", "pass"]}

rootfs = os.path.join(bundle, "rootfs")
os.makedirs(rootfs)
for link in ("bin", "lib", "lib64", "sbin"):
    if os.path.islink(f"/{link}"):
        os.symlink(os.readlink(f"/{link}"), os.path.join(rootfs, link))
subprocess.run([runtimes[0], "spec", "--bundle", bundle], check=True)
with open(os.path.join(bundle, "config.json")) as file:
    default = json.load(file)
default["process"]["terminal"] = False
prefix = subprocess.run([python, "-c", "import sys; print(sys.base_prefix)"], check=True, capture_output=True,
                        text=True).stdout.strip()
for directory in {"/usr", prefix}:
    default["mounts"].append({"destination": directory, "type": "bind", "source": directory, "options": ["rbind", "ro"]})


def report(name, target, times):
    print(f"{name} {target} {median(times):.2f} {percentile(times, 0.99):.2f} -")


for name, argv in programs.items():
    report(name, "bare", timed_runs(argv, runs))
    config = dict(default, process=dict(default["process"], args=argv))
    with open(os.path.join(bundle, "config.json"), "w") as file:
        json.dump(config, file)
    for runtime in runtimes:
        state = os.path.join(bundle, f"state-{runtime}")
        command = lambda run: [runtime, "--root", state, "run", "--bundle", bundle, f"bench-{os.getpid()}-{run}"]
        report(name, f"plain-{runtime}-run", timed_runs(command, runs))
PY

awk -v runs="$cold_runs" -v pause="$pause" -v idle="$idle" '
{ p50[$1, $2] = $3; p99[$1, $2] = $4; init[$1, $2] = $5; if (!(($1, $2) in seen)) { order[$1] = order[$1] " " $2; seen[$1, $2] = 1 } }
END {
    split("rust python", names, " ")
    for (i = 1; i <= 2; i++) {
        name = names[i]
        label = name == "rust" ? "provided.al2023 (rust; bare and plain run: /bin/true)" : "python3.12 (bare and plain run: python3 -c pass)"
        printf "\n%s\n%-24s %9s %9s %9s %10s %16s\n", label, "cold invoke", "p50 ms", "p99 ms", "init ms", "p50 / bare", "p50 / plain run"
        n = split(order[name], targets, " ")
        plain = ""
        for (j = 1; j <= n; j++) if (targets[j] ~ /^plain-runc/) plain = targets[j]
        for (j = 1; j <= n; j++) {
            t = targets[j]
            runtime = t; sub(/-pool-.*/, "", runtime); sub(/^plain-/, "", runtime); sub(/-run$/, "", runtime)
            ref = "plain-" runtime "-run"
            ratio_plain = ((name, ref) in p50) ? sprintf("%.2fx", p50[name, t] / p50[name, ref]) : "-"
            if (t == "bare") ratio_plain = "-"
            printf "%-24s %9.2f %9.2f %9s %9.2fx %16s\n", t, p50[name, t], p99[name, t], init[name, t], p50[name, t] / p50[name, "bare"], ratio_plain
        }
    }
    printf "\n%d cold starts per row (p99 of %d is close to the maximum); %s s between cold starts so the pool refills;\n", runs, runs, pause
    printf "cold invoke = client-side time of a boto3 Invoke that starts a new environment; init = REPORT Init Duration\n"
}' "$tmp/cold"
