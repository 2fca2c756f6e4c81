"""Through ROS (node + sim bridge, lockstep) and in process, the same episodes give the same result."""
from __future__ import annotations

import json

from specvla_ros.cli import main as cli_main
from specvla_ros.ros.closed_loop import run_closed_loop
from specvla_ros.sim.env import EnvConfig, TabletopEnv
from specvla_ros.sim.harness import evaluate


def test_ros_loop_reproduces_in_process_episodes(spec_decoder) -> None:
    with TabletopEnv(EnvConfig(render=False, max_steps=4)) as env:
        in_process = evaluate(spec_decoder.decode, env, ["push"], 1, seed=5)
    through_ros = run_closed_loop(spec_decoder, ["push"], 1, seed=5, bridge_parameters={"max_steps": 4},
                                  timeout_s=60.0).records
    assert len(through_ros) == 1
    a, b = in_process[0], through_ros[0]
    assert (a.instruction, a.steps, a.success) == (b.instruction, b.steps, b.success)
    assert a.acceptance_length == b.acceptance_length  # same frames decoded, same drafts accepted


def test_sim_eval_cli_writes_report(tmp_path) -> None:
    out = tmp_path / "eval"
    assert cli_main(["sim-eval", "--episodes", "1", "--tasks", "pick", "--max-steps", "3", "--relax-bins", "2",
                     "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["meta"]["policy"] == "speculative r=2"
    assert report["overall"]["episodes"] == 1 and report["episodes"][0]["steps"] == 3
    assert (out / "results.md").read_text().count("| pick |") == 1


def test_cli_task_list_matches_the_simulator() -> None:
    from specvla_ros.cli.arguments import SIM_TASKS
    from specvla_ros.sim.tasks import TASKS

    assert tuple(SIM_TASKS) == tuple(TASKS)
