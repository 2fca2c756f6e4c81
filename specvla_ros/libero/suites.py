"""LIBERO's suites and their episode limits: constants only (no imports), so the CLI's --help stays instant.

Source: OpenVLA's `experiments/robot/libero/run_libero_eval.py`, the evaluation Spec-VLA reuses.
Each limit is the suite's longest training demonstration plus a margin, counted in policy steps
after NUM_STEPS_WAIT no-op steps in which the freshly placed objects settle.
"""

MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,  # longest training demo: 193 steps
    "libero_object": 280,   # 254
    "libero_goal": 300,     # 270
    "libero_10": 520,       # 505 ("LIBERO-Long")
    "libero_90": 400,       # 373
}
SUITES: tuple[str, ...] = tuple(MAX_STEPS)
NUM_STEPS_WAIT = 10
CONTROL_HZ = 20.0  # LIBERO's robosuite control frequency
EPISODES_PER_TASK = 50  # fixed initial states shipped per task
