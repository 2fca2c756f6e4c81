"""The LIBERO bridge's ROS side without LIBERO: the shared episode loop over a stand-in simulator.

test/libero/test_libero_ros.py runs the real thing where the LIBERO venv exists; this runs
everywhere: labels, the gripper-holding zero motion on a timeout, the counters the run reports.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from specvla_ros.ros.libero_bridge import run_libero_episodes
from specvla_ros.sim.env import Observation

STEPS = 3


class StandInEnv:
    """LiberoEnv's interface as the bridge uses it: reset, step, state, step_count, config.suite."""

    config = SimpleNamespace(suite="libero_goal")

    def __init__(self) -> None:
        self.step_count = 0
        self.actions: list[np.ndarray] = []

    def _observation(self) -> Observation:
        image = np.random.default_rng(self.step_count).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        return Observation(image=image, instruction="open the top drawer", state={})

    def reset(self, seed: int, task: int) -> Observation:
        self.step_count = 0
        return self._observation()

    def state(self) -> dict:
        return {"gripper_command": -1.0}

    def step(self, action: np.ndarray) -> SimpleNamespace:
        self.actions.append(np.asarray(action, dtype=float))
        self.step_count += 1
        return SimpleNamespace(observation=self._observation(), done=self.step_count >= STEPS, success=False,
                               info={"action_refused": False, "action_clamped": False})


def test_episodes_run_in_lockstep_and_are_labelled_by_suite(spec_decoder) -> None:
    env, seen = StandInEnv(), []
    run = run_libero_episodes(spec_decoder, env, [(0, 0), (4, 7)], timeout_s=120.0, on_episode=seen.append)
    assert [(r.task, r.seed, r.steps) for r in run.records] == [("libero_goal/0", 0, STEPS),
                                                                ("libero_goal/4", 7, STEPS)]
    assert seen == run.records
    assert all(len(r.latency_ms) == STEPS for r in run.records)  # every frame's decode statistics filed
    assert (run.frames_published, run.commands_applied, run.timeouts) == (2 * STEPS, 2 * STEPS, 0)
    assert len(run.sim_step_ms) == 2 * STEPS and run.sim_step_ms_mean is not None


def test_no_command_holds_still_with_the_last_gripper_command(spec_decoder) -> None:
    env = StandInEnv()
    # The node never answers (dry run): the bridge steps on its timeout with zero motion.
    run = run_libero_episodes(spec_decoder, env, [(0, 0)], node_parameters={"dry_run": True},
                              bridge_parameters={"step_timeout_s": 0.2}, timeout_s=60.0)
    assert run.timeouts == STEPS and run.commands_applied == 0
    for action in env.actions:
        np.testing.assert_array_equal(action, [0, 0, 0, 0, 0, 0, -1.0])
    assert run.records[0].steps == STEPS and len(run.records[0].policy_ms) == STEPS
