"""The model server caps the native thread pools of its model's libraries (one thread per inference by default)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_operator.server.main import parse_args

BASE = ["--model-name", "m", "--source", "file:///m.joblib"]


def test_one_thread_by_default_and_a_bad_count_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(BASE).threads == 1
    assert parse_args([*BASE, "--threads", "4"]).threads == 4
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--threads", "0"])
    assert "--threads (MLOPS_INFERENCE_THREADS) must be at least 1, got 0" in capsys.readouterr().err


# Run in a fresh interpreter: the limits are process-wide.
PROBE = """
import os, sys
from threadpoolctl import threadpool_info
from mlops_operator.server.main import _limit_native_threads
_limit_native_threads(int(sys.argv[1]))
import sklearn.ensemble  # loads OpenMP after the cap, as a model load does
print(os.environ["OMP_NUM_THREADS"], sorted({(i["user_api"], i["num_threads"]) for i in threadpool_info()}))
"""


@pytest.mark.parametrize("threads", [1, 3])
def test_openmp_and_blas_pools_are_capped(threads: int) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], capture_output=True, text=True, check=True)
    env, pools = out.stdout.split(" ", 1)
    assert env == str(threads)
    assert f"('blas', {threads})" in pools and f"('openmp', {threads})" in pools, pools


def test_a_size_set_by_the_user_stands() -> None:
    env = {"OMP_NUM_THREADS": "3", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, "1"], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.startswith("3 ") and "('openmp', 3)" in out.stdout, out.stdout
