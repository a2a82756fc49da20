"""Make sure the headless browser of the report tests is installed (run by ``run.py test`` before pytest).

Installs Debian's ``chromium`` with apt-get when ``/usr/bin/chromium`` is missing and this runs as root; prints
what it did; never fails the run (the browser test then fails with a clear message instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    """Install chromium if needed and possible; always return 0."""
    if os.path.exists(CHROMIUM):
        print(f"browser_setup: {CHROMIUM} present")
        return 0
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"browser_setup: {CHROMIUM} missing and not running as root; install it with "
              "'apt-get install chromium' (the browser test will fail until then)")
        return 0
    if shutil.which("apt-get") is None:
        print(f"browser_setup: {CHROMIUM} missing and no apt-get here; install Chromium at {CHROMIUM}")
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        print("browser_setup: running " + " ".join(cmd), flush=True)
        try:
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"browser_setup: {' '.join(cmd)} failed: {exc}")
            return 0
        if result.returncode != 0:
            print(f"browser_setup: {' '.join(cmd)} exited {result.returncode}:\n{result.stderr[-2000:]}")
            return 0
    print(f"browser_setup: installed chromium ({'present' if os.path.exists(CHROMIUM) else 'still missing'} "
          f"at {CHROMIUM})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
