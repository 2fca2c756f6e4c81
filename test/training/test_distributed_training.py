"""Two CPU ranks under torchrun (gloo on 127.0.0.1) extract the same cache and train a head to the
same held-out acceptance as one rank; a run saved by one rank resumes on two."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from specvla_ros.cli import main as cli_main
from specvla_ros.training.feature_cache import FeatureCache
from test.models import make_pair
from test.training.image_folder import write_image_folder

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

REPO = Path(__file__).resolve().parents[2]
TORCHRUN_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(arguments: list[str], ranks: int = 2) -> str:
    """`torchrun --nproc-per-node RANKS -m specvla_ros.cli ARGUMENTS` on loopback; its output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(ranks),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "specvla_ros.cli", *arguments]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TORCHRUN_TIMEOUT_S)
    finally:
        if process.poll() is None:  # timed out: end torchrun and the ranks it started
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same command on 2 ranks (torchrun) and on 1 (in process): extraction, then 30 steps."""
    root = tmp_path_factory.mktemp("distributed")
    target, _ = make_pair(5)
    target_dir, images = target.save(root / "target"), write_image_folder(root / "images", 24, seed=11)
    common = ["train-draft", "--target", str(target_dir), "--data", str(images), "--frames", "16", "--held-out",
              "6", "--shard-frames", "4", "--steps", "30", "--batch-size", "4", "--eval-every", "15"]
    output = torchrun([*common, "--out", str(root / "two")])
    assert "global batch 4 on 2 rank(s)" in output
    assert cli_main([*common, "--out", str(root / "one")]) == 0
    return root


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_two_ranks_extract_the_cache_one_rank_extracts(runs) -> None:
    one, two = FeatureCache(runs / "one/features"), FeatureCache(runs / "two/features")
    assert one.index["frames"] == two.index["frames"] and len(two.index["shards"]) == 4
    for i in range(len(one)):
        torch.testing.assert_close(one.frame(i).features, two.frame(i).features, rtol=1e-5, atol=1e-5)
        assert torch.equal(one.frame(i).tokens, two.frame(i).tokens)


def test_two_ranks_reach_the_held_out_acceptance_of_one(runs) -> None:
    one, two = _report(runs / "one"), _report(runs / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    start, final_one, final_two = one["evaluations"][0], one["evaluations"][-1], two["evaluations"][-1]
    assert final_one["acceptance_length_r0"] > start["acceptance_length_r0"] + 0.3  # it learned
    # Same global batches and noise: the runs differ only by float summation order, far inside the
    # noise between seeds. Held-out acceptance is a mean over 6 frames of lengths 1..7.
    for key in ("acceptance_length_r0", "acceptance_length_r3"):
        assert abs(final_one[key] - final_two[key]) <= 0.1, (key, final_one, final_two)
    np.testing.assert_allclose(one["losses"], two["losses"], rtol=1e-4)
    weights_one, weights_two = load_file(runs / "one/model.safetensors"), load_file(runs / "two/model.safetensors")
    for name, value in weights_one.items():
        torch.testing.assert_close(value, weights_two[name], rtol=1e-3, atol=1e-4)


def test_a_run_saved_by_one_rank_resumes_on_two(runs) -> None:
    out = runs / "resumed"
    common = ["train-draft", "--features", str(runs / "one/features"), "--out", str(out), "--batch-size", "4",
              "--eval-every", "15"]
    assert cli_main([*common, "--steps", "15"]) == 0
    torchrun([*common, "--steps", "30", "--resume"])
    resumed, straight = _report(out), _report(runs / "one")
    assert resumed["world_size"] == 2 and len(resumed["losses"]) == 30
    np.testing.assert_allclose(resumed["losses"], straight["losses"], rtol=1e-4)
    assert [e["step"] for e in resumed["evaluations"]] == [0, 15, 30]
    for row, reference in zip(resumed["evaluations"], straight["evaluations"], strict=True):
        assert abs(row["acceptance_length_r0"] - reference["acceptance_length_r0"]) <= 0.1
