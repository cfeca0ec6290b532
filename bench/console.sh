#!/usr/bin/env bash
# Console benchmark: how fast the web console's pages load from a local release
# server in headless Chromium (a cold browser context each round: nothing cached),
# and what its embedded pages weigh in the binary.
#
#   bench/console.sh
#   BENCH_ROUNDS=10 bench/console.sh
bench=console.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_need chromium
venv=$HOME/.cache/nimbus/bench-venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import boto3, playwright' 2>/dev/null ||
    "$venv/bin/pip" install --quiet boto3 "$(grep '^playwright==' "$root/tests/e2e/requirements.txt")"
python=$venv/bin/python

echo "building the console's pages..." >&2
(cd "$root/console" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build >/dev/null)
build
start_nimbus
"$python" - "$credentials" "$nimbus_url" "$rounds" "$root/console/dist" "$bin/nimbus" <<'PY'
import configparser
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import boto3
from playwright.sync_api import sync_playwright

credentials_file, url, rounds, dist, binary = sys.argv[1], sys.argv[2].rstrip("/"), int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
keys = configparser.ConfigParser()
keys.read(credentials_file)
key_id, secret = keys["nimbus"]["aws_access_key_id"], keys["nimbus"]["aws_secret_access_key"]
session = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name="us-east-1")
for n in range(20):
    session.client("s3", endpoint_url=url).create_bucket(Bucket=f"bench-bucket-{n}")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
figures = {name: [] for name in ("sign-in page (cold)", "sign in to dashboard", "functions list",
                                 "buckets list (20)", "new function (editor)")}


def timed(name, action):
    started = time.perf_counter()
    action()
    figures[name].append((time.perf_counter() - started) * 1000)


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    for _ in range(rounds):
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        timed("sign-in page (cold)", lambda: (page.goto(f"{url}/console/"), page.wait_for_selector("#access-key-id")))
        page.fill("#access-key-id", key_id)
        page.fill("#secret-access-key", secret)
        timed("sign in to dashboard", lambda: (page.click("#sign-in"), page.wait_for_selector("#dashboard .service-card")))
        timed("functions list", lambda: (page.click("a[href='#/functions']"), page.wait_for_selector("#functions-table")))
        timed("buckets list (20)", lambda: (page.click("a[href='#/buckets']"),
                                            page.wait_for_selector("#buckets-table a:has-text('bench-bucket-19')")))
        timed("new function (editor)", lambda: (page.goto(f"{url}/console/#/functions/new"),
                                                page.wait_for_selector("#fn-editor .cm-content")))
        context.close()
    browser.close()

print(f"\nConsole page loads, headless Chromium against a local release server ({rounds} rounds, cold context each)\n")
print(f"{'step':<26} {'p50 ms':>8} {'max ms':>8}")
for name, samples in figures.items():
    print(f"{name:<26} {statistics.median(samples):>8.1f} {max(samples):>8.1f}")

files = [p for p in dist.rglob("*") if p.is_file()]
plain = sum(p.stat().st_size for p in files)
gzipped = sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)
index = (dist / "index.html").read_text()
first_js = [p for p in files if p.suffix == ".js" and p.name in index]
first = sum(len(gzip.compress(p.read_bytes(), 9)) for p in first_js + [dist / "index.html"]
            + [p for p in files if p.suffix == ".css" and p.name in index])
size = os.path.getsize(binary)
print(f"\nEmbedded pages: {len(files)} files, {plain / 1024:.0f} KB built, {gzipped / 1024:.0f} KB gzipped in the binary "
      f"({100 * gzipped / size:.2f}% of its {size / 1e6:.1f} MB); first load fetches {first / 1024:.0f} KB gzipped")
PY
