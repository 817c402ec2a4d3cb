"""A bounded soak in the suite: mixed traffic with aborts, resets and config changes,
and the gateway's memory and descriptors stay flat (``bench/soak.py`` runs it longer)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_memory_and_descriptors_stay_flat_under_a_mixed_soak():
    result = subprocess.run([sys.executable, str(SOAK), "--duration", "45", "--warmup", "5", "--clients", "16",
                             "--check", "--json"], capture_output=True, text=True, timeout=180)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, report["problems"]
    assert report["requests"] > 10_000
    outcomes = report["outcomes"]
    assert outcomes["big abandoned"] and outcomes["cut off (expected for resets)"] and outcomes["post 200"]
