"""The README's quick start, run as written against a fresh server: the block after
the `quick-start` marker, with the server's address and data dir in place of the
defaults, and the built binary on PATH."""

import os
import re
import subprocess
from pathlib import Path

from conftest import REPO, eventually, nimbus_binary


def quick_start_block() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- quick-start:.*?-->\n```sh\n(.*?)```", readme, re.S)
    assert match, "the README has a quick-start block"
    return match.group(1)


def test_the_readme_quick_start_works_as_written(fresh_nimbus, tmp_path):
    nimbus = fresh_nimbus()
    block = quick_start_block()
    *steps, last = block.strip().splitlines()
    assert last == "nimbus logs tail on-upload"
    # The clone's layout: ./nimbus-data is the server's data dir, target/release has nimbus.
    (tmp_path / "nimbus-data").symlink_to(nimbus.data_dir)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "release").symlink_to(Path(nimbus_binary()).parent)
    script = "set -euo pipefail\nshopt -s expand_aliases\n" + "\n".join(steps)
    script = script.replace("http://127.0.0.1:4566", nimbus.endpoint)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NIMBUS_"))}
    env["NIMBUS_ENDPOINT"] = nimbus.endpoint
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "on-upload is ready" in done.stdout

    def tail():
        return subprocess.run(["bash", "-c", f'export PATH="$PWD/target/release:$PATH"\n{last}'], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60).stdout

    assert eventually(lambda: "new upload: hello.txt (14 bytes)" in tail(), timeout=30), tail()
