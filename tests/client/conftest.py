from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_client(
    port: int, *args: str, input: str = "", timeout: float = 15.0
) -> subprocess.CompletedProcess[str]:
    """``python -m chatclient`` in script mode, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "chatclient", "--port", str(port), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def spawn_client(port: int, *args: str) -> subprocess.Popen[str]:
    """A long-running script-mode client (``--listen``); stdin and stdout are pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "chatclient", "--port", str(port), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
