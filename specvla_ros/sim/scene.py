"""MJCF builder for the tabletop scene: table, Cartesian gantry gripper, cubes, plates, camera.

Why a gantry instead of a welded mocap body: three prismatic joints (x, y, z) and one yaw hinge,
each driven by a PD position servo, give a gripper that tracks Cartesian targets closely, has a
bounded force (servo force limits: it cannot crush or fling objects), and whose joint limits *are*
the workspace bounds. Roll and pitch are mechanically fixed (fingers always point down), which is
all a tabletop pick/push/place needs. The two fingers are separate slide joints with their own
position servos, so grasps are held by contact friction only — nothing is welded.

World frame: table top at z = 0, x to the camera's right, y away from the camera, z up.
The gripper frame's origin is the tool centre point (TCP), between the finger pads at pad centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Colour name -> RGBA. Names are what instructions say, so keep them plain English.
PALETTE: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.10, 1.0),
    "blue": (0.12, 0.30, 0.90, 1.0),
    "yellow": (0.95, 0.80, 0.10, 1.0),
    "green": (0.15, 0.65, 0.25, 1.0),
    "purple": (0.55, 0.25, 0.75, 1.0),
    "orange": (0.95, 0.50, 0.10, 1.0),
}

FINGER_NAMES = ("finger_left", "finger_right")


@dataclass(frozen=True)
class CameraConfig:
    """The fixed workspace camera. Position and look-at point are in world metres."""

    pos: tuple[float, float, float] = (0.0, -0.42, 0.46)
    lookat: tuple[float, float, float] = (0.0, 0.03, 0.05)
    fovy_deg: float = 55.0
    width: int = 224
    height: int = 224


@dataclass(frozen=True)
class SceneConfig:
    """What is on the table and how big things are (metres, kilograms)."""

    cube_colors: tuple[str, ...] = ("red", "blue", "yellow")
    plate_colors: tuple[str, ...] = ("green", "purple")
    cube_half_size: float = 0.02
    cube_mass: float = 0.06
    plate_radius: float = 0.06
    plate_half_height: float = 0.004
    # TCP workspace (also the gantry joint limits): keeps the gripper over the table.
    workspace_low: tuple[float, float, float] = (-0.30, -0.16, 0.022)
    workspace_high: tuple[float, float, float] = (0.30, 0.25, 0.30)
    yaw_limit_rad: float = float(np.pi / 2)
    finger_max_opening: float = 0.04  # per finger, from the centre plane to the pad's inner face
    physics_dt: float = 0.002
    camera: CameraConfig = field(default_factory=CameraConfig)

    def __post_init__(self) -> None:
        for color in (*self.cube_colors, *self.plate_colors):
            if color not in PALETTE:
                raise ValueError(f"unknown colour {color!r}; known: {sorted(PALETTE)}")
        if len(set(self.cube_colors)) != len(self.cube_colors):
            raise ValueError("cube colours must be distinct (instructions name cubes by colour)")


def cube_name(color: str) -> str:
    return f"{color}_cube"


def plate_name(color: str) -> str:
    return f"{color}_plate"


def camera_xyaxes(pos: tuple[float, float, float], lookat: tuple[float, float, float]) -> np.ndarray:
    """Camera x and y axes (6 numbers) for a level camera at `pos` looking at `lookat`."""
    forward = np.asarray(lookat, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.concatenate([right, up])


def _fmt(values: object) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.ravel(values))


def _gripper_xml(cfg: SceneConfig) -> str:
    """Gantry bodies (x -> y -> z -> yaw) and the two-finger hand. Joint positions equal TCP coords."""
    lo, hi = cfg.workspace_low, cfg.workspace_high
    pad_t, pad_w, pad_h = 0.006, 0.016, 0.025  # pad half sizes: thickness (x), width (y), height (z)
    pad_z = 0.005  # pad spans tcp_z - 0.02 .. tcp_z + 0.03
    palm_z = pad_z + pad_h + 0.01
    opening = cfg.finger_max_opening
    # Gravity compensation on every moving gripper body: the servos only fight payloads and contacts.
    body = 'gravcomp="1"'
    fingers = []
    for name, sign in (("finger_left", -1.0), ("finger_right", 1.0)):
        fingers.append(f"""
          <body name="{name}" {body}>
            <joint name="{name}" type="slide" axis="{sign:g} 0 0" range="0 {opening:g}" damping="2" armature="0.01"/>
            <geom name="{name}_pad" type="box" class="pad" size="{pad_t} {pad_w} {pad_h}"
                  pos="{sign * pad_t:g} 0 {pad_z}"/>
            <geom type="box" class="visual_hand" size="{pad_t} {pad_w * 0.6:g} 0.012"
                  pos="{sign * pad_t:g} 0 {palm_z - 0.012:g}"/>
          </body>""")
    return f"""
    <body name="gantry_x" {body}>
      <joint name="ee_x" type="slide" axis="1 0 0" range="{lo[0]} {hi[0]}" armature="0.1"/>
      <inertial pos="0 0 0" mass="0.2" diaginertia="1e-3 1e-3 1e-3"/>
      <body name="gantry_y" {body}>
        <joint name="ee_y" type="slide" axis="0 1 0" range="{lo[1]} {hi[1]}" armature="0.1"/>
        <inertial pos="0 0 0" mass="0.2" diaginertia="1e-3 1e-3 1e-3"/>
        <body name="gantry_z" {body}>
          <joint name="ee_z" type="slide" axis="0 0 1" range="{lo[2]} {hi[2]}" armature="0.1"/>
          <inertial pos="0 0 0" mass="0.2" diaginertia="1e-3 1e-3 1e-3"/>
          <body name="hand" {body}>
            <joint name="ee_yaw" type="hinge" axis="0 0 1" range="{-cfg.yaw_limit_rad:g} {cfg.yaw_limit_rad:g}"
                   armature="0.005"/>
            <site name="tcp" size="0.004" rgba="1 1 1 0"/>
            <geom name="palm" type="box" size="{opening + 2 * pad_t + 0.005:g} 0.022 0.01" pos="0 0 {palm_z + 0.01:g}"
                  rgba="0.25 0.25 0.28 1" mass="0.3"/>
            <geom type="cylinder" class="visual_hand" size="0.018 0.15" pos="0 0 {palm_z + 0.17:g}"/>
            {"".join(fingers)}
          </body>
        </body>
      </body>
    </body>"""


def build_mjcf(cfg: SceneConfig) -> str:
    """Return the MJCF XML string for `cfg`. Object poses are set at reset, not here."""
    cam = cfg.camera
    half = cfg.cube_half_size
    # Cubes start parked off-table; reset() places them. Plates are static bodies moved via body_pos.
    cubes = "".join(
        f"""
    <body name="{cube_name(c)}" pos="{0.5 + 0.1 * i} 0.6 {half}">
      <freejoint name="{cube_name(c)}"/>
      <geom name="{cube_name(c)}" type="box" size="{half} {half} {half}" mass="{cfg.cube_mass}"
            rgba="{_fmt(PALETTE[c])}" friction="1.0 0.005 0.0001" condim="4"/>
    </body>"""
        for i, c in enumerate(cfg.cube_colors)
    )
    plates = "".join(
        f"""
    <body name="{plate_name(c)}" pos="{-0.5 - 0.15 * i} 0.6 {cfg.plate_half_height}">
      <geom name="{plate_name(c)}" type="cylinder" size="{cfg.plate_radius} {cfg.plate_half_height}"
            rgba="{_fmt(PALETTE[c])}" friction="1.0 0.005 0.0001"/>
    </body>"""
        for i, c in enumerate(cfg.plate_colors)
    )
    finger_ctrl = f'ctrlrange="0 {cfg.finger_max_opening:g}" kp="300" forcerange="-8 8"'
    xyz_servo = 'kp="3000" kv="120" forcerange="-60 60"'
    return f"""<mujoco model="specvla_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{cfg.physics_dt}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{max(cam.width, 640)}" offheight="{max(cam.height, 480)}"/>
    <quality shadowsize="1024"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.4 0.4 0.4" specular="0.05 0.05 0.05"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.82 0.9" rgb2="0.35 0.4 0.45"
             width="64" height="64"/>
    <texture name="wood" type="2d" builtin="flat" rgb1="0.72 0.58 0.42" width="16" height="16"/>
    <material name="table" texture="wood" rgba="1 1 1 1" specular="0.1"/>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.3 0.3 0.32" rgb2="0.25 0.25 0.27"
             width="64" height="64"/>
    <material name="floor" texture="floor" texrepeat="8 8"/>
  </asset>
  <default>
    <default class="pad">
      <geom friction="1.5 0.01 0.0002" condim="4" rgba="0.15 0.15 0.15 1" mass="0.03"/>
    </default>
    <default class="visual_hand">
      <geom contype="0" conaffinity="0" rgba="0.6 0.6 0.65 1" mass="0"/>
    </default>
  </default>
  <worldbody>
    <light name="key" pos="0.3 -0.4 1.2" dir="-0.25 0.35 -1" diffuse="0.6 0.6 0.6" castshadow="true"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.75" material="floor"/>
    <geom name="table" type="box" size="0.45 0.35 0.02" pos="0 0.05 -0.02" material="table"
          friction="1.0 0.005 0.0001"/>
    <camera name="front" pos="{_fmt(cam.pos)}" xyaxes="{_fmt(camera_xyaxes(cam.pos, cam.lookat))}"
            fovy="{cam.fovy_deg}"/>
    {_gripper_xml(cfg)}
    {cubes}
    {plates}
  </worldbody>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
    <exclude body1="hand" body2="finger_left"/>
    <exclude body1="hand" body2="finger_right"/>
  </contact>
  <actuator>
    <position name="ee_x" joint="ee_x" {xyz_servo}/>
    <position name="ee_y" joint="ee_y" {xyz_servo}/>
    <position name="ee_z" joint="ee_z" {xyz_servo}/>
    <position name="ee_yaw" joint="ee_yaw" kp="8" kv="0.4" forcerange="-3 3"/>
    <position name="finger_left" joint="finger_left" {finger_ctrl}/>
    <position name="finger_right" joint="finger_right" {finger_ctrl}/>
  </actuator>
</mujoco>
"""
