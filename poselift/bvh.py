"""BVH export of h36m17 poses: a hierarchy with the person's bone lengths, per-frame rotations, root motion.

Conventions (docs/outputs.md says the same):

- Frame: Y up. poselift's camera frame (x right, y down, z forward) is turned 180° about x, so BVH x is right,
  y is up and z points toward the camera (the right-handed frame Blender and most BVH tools expect). A camera
  that looked down at the person leaves the whole skeleton tilted by that angle: the frame is the camera's.
- Rest pose: a T-pose facing +z (toward the camera): legs and spine straight down/up, arms along ±x; the
  person's left is +x. Each bone's rest length is its median length over the clip.
- Hierarchy: the h36m17 tree, with two zero-length joints at the pelvis (`right_pelvis`, `left_pelvis`: the
  pelvis→hip bones) and two at the thorax (`right_collar`, `left_collar`: the thorax→shoulder bones), as CMU's
  BVH files have, so every bone has a rotation of its own and forward kinematics gives back each bone's
  direction exactly. Wrists, ankles and the head top are End Sites.
- Rotations: each joint's rotation turns its bone's rest direction into the posed direction; the twist
  about the bone comes from a neighbouring direction (`global_rotations`): the pelvis from the hip line, the
  spine from the mean of the hip and shoulder lines, the thorax from the shoulder line, the neck from the
  thorax, the pelvis and collar joints from their parent's up axis, and a whole limb (upper and lower bone)
  from the plane of the limb (the knee/elbow hinge axis), blended toward the parent's frame as the limb
  straightens.
- Channels: the root `Xposition Yposition Zposition Zrotation Xrotation Yrotation`, every other joint
  `Zrotation Xrotation Yrotation` (R = Rz·Rx·Ry), degrees. Root position: the pelvis trajectory (zeros if
  unknown). Frame Time: 1 / fps. Lengths in centimetres unless asked otherwise.

Only numpy: the serving and video paths use this without scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poselift.skeleton import H36M17_PARENTS, NUM_JOINTS

UNITS_PER_MM: dict[str, float] = {"mm": 1.0, "cm": 0.1, "m": 0.001}

# Camera frame (x right, y down, z forward) -> BVH frame (x right, y up, z toward the camera): 180° about x.
CAMERA_TO_YUP = np.diag([1.0, -1.0, -1.0])

_X, _Y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])

# Rest (T-pose) direction of the bone ending at each h36m17 joint, in the BVH frame (0: the pelvis, none).
REST_DIRECTIONS = np.array(
    [
        [0, 0, 0],
        [-1, 0, 0], [0, -1, 0], [0, -1, 0],  # right hip, knee, ankle
        [1, 0, 0], [0, -1, 0], [0, -1, 0],  # left hip, knee, ankle
        [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0],  # spine, thorax, neck, head
        [1, 0, 0], [1, 0, 0], [1, 0, 0],  # left shoulder, elbow, wrist
        [-1, 0, 0], [-1, 0, 0], [-1, 0, 0],  # right shoulder, elbow, wrist
    ],
    dtype=np.float64,
)  # fmt: skip


@dataclass(frozen=True)
class _Node:
    """One BVH joint: where it sits (an h36m17 joint), the bone it turns (to `child`), its parent node."""

    name: str
    parent: int  # index into NODES, -1 for the root
    joint: int  # h36m17 joint at this node's position
    child: int  # h36m17 joint at the end of the bone this node's rotation turns
    end_site: bool  # the child is an End Site (wrist, ankle, head top)


NODES: tuple[_Node, ...] = (
    _Node("pelvis", -1, 0, 7, False),
    _Node("right_pelvis", 0, 0, 1, False),
    _Node("right_hip", 1, 1, 2, False),
    _Node("right_knee", 2, 2, 3, True),
    _Node("left_pelvis", 0, 0, 4, False),
    _Node("left_hip", 4, 4, 5, False),
    _Node("left_knee", 5, 5, 6, True),
    _Node("spine", 0, 7, 8, False),
    _Node("thorax", 7, 8, 9, False),
    _Node("neck", 8, 9, 10, True),
    _Node("left_collar", 8, 8, 11, False),
    _Node("left_shoulder", 10, 11, 12, False),
    _Node("left_elbow", 11, 12, 13, True),
    _Node("right_collar", 8, 8, 14, False),
    _Node("right_shoulder", 13, 14, 15, False),
    _Node("right_elbow", 14, 15, 16, True),
)
_NODE = {node.name: i for i, node in enumerate(NODES)}

# Limbs: (upper node, lower node, rest hinge axis). The hinge axis is upper × lower for a knee bent backward /
# an elbow bent forward, in the rest frame.
_LIMBS = (
    ("right_hip", "right_knee", _X),
    ("left_hip", "left_knee", _X),
    ("left_shoulder", "left_elbow", -_Y),
    ("right_shoulder", "right_elbow", _Y),
)
# How much of the parent's frame the limb twist keeps: the hinge axis has length sin(bend), so below a few
# degrees of bend the twist follows the parent instead of a noisy plane.
_LIMB_FALLBACK_WEIGHT = 0.1


def camera_to_yup(points_mm: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 3) BVH-frame points (x right, y up, z toward the camera)."""
    return np.asarray(points_mm, dtype=np.float64) @ CAMERA_TO_YUP.T


def yup_to_camera(points: np.ndarray) -> np.ndarray:
    """Inverse of `camera_to_yup` (the same 180° turn)."""
    return np.asarray(points, dtype=np.float64) @ CAMERA_TO_YUP.T


def bone_lengths_mm(poses_mm: np.ndarray) -> np.ndarray:
    """(17,) median length over the clip of the bone ending at each joint (0 for the pelvis)."""
    poses_mm = np.asarray(poses_mm, dtype=np.float64)
    parents = np.array(H36M17_PARENTS)
    lengths = np.linalg.norm(poses_mm[:, 1:] - poses_mm[:, parents[1:]], axis=-1)  # (T, 16)
    return np.concatenate([[0.0], np.median(lengths, axis=0)])


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) -> (unit vectors, whether each was long enough to have a direction)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    ok = norm[..., 0] > 1e-9
    return v / np.where(norm > 1e-9, norm, 1.0), ok


def _frame(primary: np.ndarray, secondary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3) orthonormal frames [primary, secondary ⟂ primary, primary × secondary] as columns.

    Also returns (T,) whether the frame is defined (primary non-zero, secondary not parallel to it).
    """
    e1, ok1 = _unit(primary)
    e2, ok2 = _unit(secondary - np.sum(secondary * e1, axis=-1, keepdims=True) * e1)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1), ok1 & ok2


def _aim(
    rest_primary: np.ndarray,
    rest_secondary: np.ndarray,
    primary: np.ndarray,
    secondary: np.ndarray,
    parent_global: np.ndarray,
) -> np.ndarray:
    """(T, 3, 3) global rotations taking the rest directions to the posed ones.

    Where the posed directions give no frame (a zero-length bone, a twist direction along the bone) the joint
    keeps its rest pose relative to its parent (`parent_global`).
    """
    rest, _ = _frame(rest_primary[None], rest_secondary[None])
    posed, ok = _frame(primary, secondary)
    rotation = posed @ np.swapaxes(rest, -1, -2)
    return np.where(ok[:, None, None], rotation, parent_global)


def global_rotations(poses_yup: np.ndarray) -> np.ndarray:
    """(T, 17, 3) poses in the BVH frame -> (T, len(NODES), 3, 3) global rotation of every BVH joint."""
    p = poses_yup
    frames = p.shape[0]
    out = np.tile(np.eye(3), (frames, len(NODES), 1, 1))

    def bone(node: str) -> np.ndarray:
        n = NODES[_NODE[node]]
        return p[:, n.child] - p[:, n.joint]

    hip_line, _ = _unit(p[:, 4] - p[:, 1])
    shoulder_line, _ = _unit(p[:, 11] - p[:, 14])
    # node -> (posed hinge axis, before the fallback is blended in; rest hinge axis)
    limb_axes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for upper, lower, rest_axis in _LIMBS:
        axis = np.cross(_unit(bone(upper))[0], _unit(bone(lower))[0])
        limb_axes[upper] = limb_axes[lower] = (axis, rest_axis)

    # Twist (secondary) direction of each node: (rest, posed). Nodes come parent-first, so a parent's
    # global rotation is known when a child's twist refers to it.
    for i, node in enumerate(NODES):
        parent_global = out[:, node.parent] if node.parent >= 0 else out[:, i]
        if node.name == "pelvis":
            twist = (_X, hip_line)
        elif node.name == "spine":
            twist = (_X, hip_line + shoulder_line)
        elif node.name == "thorax":
            twist = (_X, shoulder_line)
        elif node.name == "neck":
            twist = (_X, parent_global @ _X)
        elif node.name.endswith(("_pelvis", "_collar")):
            twist = (_Y, parent_global @ _Y)
        else:  # a limb's upper or lower bone: the hinge axis, blended toward the upper bone's parent frame
            axis, rest_axis = limb_axes[node.name]
            is_upper = node.name.endswith(("_hip", "_shoulder"))
            upper_parent = node.parent if is_upper else NODES[node.parent].parent
            twist = (rest_axis, axis + _LIMB_FALLBACK_WEIGHT * (out[:, upper_parent] @ rest_axis))
        out[:, i] = _aim(REST_DIRECTIONS[node.child], twist[0], bone(node.name), twist[1], parent_global)
    return out


def local_rotations(global_rot: np.ndarray) -> np.ndarray:
    """(T, N, 3, 3) global rotations -> rotations relative to each node's parent (the BVH channels)."""
    local = global_rot.copy()
    for i, node in enumerate(NODES):
        if node.parent >= 0:
            local[:, i] = np.swapaxes(global_rot[:, node.parent], -1, -2) @ global_rot[:, i]
    return local


def matrix_to_euler_zxy(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 3) angles (z, x, y) in radians with R = Rz(z) · Rx(x) · Ry(y).

    At gimbal lock (x = ±90°) y is set to 0 and z carries the whole turn about the vertical.
    """
    r = np.asarray(rotation, dtype=np.float64)
    cos_x = np.hypot(r[..., 2, 0], r[..., 2, 2])
    x = np.arctan2(r[..., 2, 1], cos_x)  # not arcsin: exact near ±90° too
    locked = cos_x < 1e-12
    y = np.where(locked, 0.0, np.arctan2(-r[..., 2, 0], r[..., 2, 2]))
    z = np.where(locked, np.arctan2(r[..., 1, 0], r[..., 0, 0]), np.arctan2(-r[..., 0, 1], r[..., 1, 1]))
    return np.stack([z, x, y], axis=-1)


def euler_zxy_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(..., 3) (z, x, y) radians -> (..., 3, 3) Rz(z) · Rx(x) · Ry(y) (inverse of `matrix_to_euler_zxy`)."""
    z, x, y = np.moveaxis(np.asarray(angles, dtype=np.float64), -1, 0)
    zero, one = np.zeros_like(z), np.ones_like(z)

    def stack(rows: list[list[np.ndarray]]) -> np.ndarray:
        return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)

    rz = stack([[np.cos(z), -np.sin(z), zero], [np.sin(z), np.cos(z), zero], [zero, zero, one]])
    rx = stack([[one, zero, zero], [zero, np.cos(x), -np.sin(x)], [zero, np.sin(x), np.cos(x)]])
    ry = stack([[np.cos(y), zero, np.sin(y)], [zero, one, zero], [-np.sin(y), zero, np.cos(y)]])
    return rz @ rx @ ry


def rest_length_poses(poses_mm: np.ndarray, lengths_mm: np.ndarray | None = None) -> np.ndarray:
    """(T, 17, 3) poses with every bone's direction kept and its length set to `lengths_mm` (default: the
    clip's median lengths), pelvis fixed. What the BVH's forward kinematics must give back."""
    poses_mm = np.asarray(poses_mm, dtype=np.float64)
    lengths_mm = bone_lengths_mm(poses_mm) if lengths_mm is None else np.asarray(lengths_mm, dtype=np.float64)
    out = np.zeros_like(poses_mm)
    out[:, 0] = poses_mm[:, 0]
    for joint in range(1, NUM_JOINTS):  # parents come before children in h36m17 order
        parent = H36M17_PARENTS[joint]
        direction, _ = _unit(poses_mm[:, joint] - poses_mm[:, parent])
        out[:, joint] = out[:, parent] + lengths_mm[joint] * direction
    return out


def _vec(values: np.ndarray) -> str:
    return " ".join(f"{v:.6f}" for v in values)


def bvh_text(
    poses_mm: np.ndarray,
    fps: float,
    trajectory_mm: np.ndarray | None = None,
    units: str = "cm",
) -> str:
    """The BVH file for a clip.

    Args:
        poses_mm: (T, 17, 3) root-relative h36m17 poses in the camera frame (x right, y down, z forward), mm.
        fps: frames per second (Frame Time = 1 / fps).
        trajectory_mm: (T, 3) pelvis positions in the camera frame, mm; None or all zeros: the root stays at
            the origin.
        units: "cm" (default), "mm" or "m" for every length in the file.

    Returns:
        The file's text (module docstring: frame, rest pose, hierarchy, twist rule, channels).

    Raises:
        ValueError: wrong shapes, non-finite values, fps <= 0, unknown units.
    """
    poses_mm = np.asarray(poses_mm, dtype=np.float64)
    if poses_mm.ndim != 3 or poses_mm.shape[1:] != (NUM_JOINTS, 3) or poses_mm.shape[0] == 0:
        raise ValueError(f"poses_mm must have shape (T, {NUM_JOINTS}, 3) with T >= 1, got {poses_mm.shape}")
    frames = poses_mm.shape[0]
    trajectory_mm = np.zeros((frames, 3)) if trajectory_mm is None else np.asarray(trajectory_mm, np.float64)
    if trajectory_mm.shape != (frames, 3):
        raise ValueError(f"trajectory_mm must have shape ({frames}, 3), got {trajectory_mm.shape}")
    if not (np.all(np.isfinite(poses_mm)) and np.all(np.isfinite(trajectory_mm))):
        raise ValueError("poses_mm and trajectory_mm must be finite")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    if units not in UNITS_PER_MM:
        raise ValueError(f"unknown units {units!r}; expected one of {', '.join(UNITS_PER_MM)}")
    scale = UNITS_PER_MM[units]

    centred = poses_mm - poses_mm[:, :1]
    poses_yup = camera_to_yup(centred)
    lengths = bone_lengths_mm(centred) * scale
    rotations = local_rotations(global_rotations(poses_yup))
    angles_deg = np.degrees(matrix_to_euler_zxy(rotations))  # (T, N, 3) z, x, y
    root_position = camera_to_yup(trajectory_mm + poses_mm[:, 0]) * scale  # (T, 3)

    lines = ["HIERARCHY"]

    def write(index: int, depth: int) -> None:
        node = NODES[index]
        pad = "  " * depth
        if node.parent < 0:
            lines.append(f"{pad}ROOT {node.name}")
            offset = np.zeros(3)
            channels = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
        else:
            lines.append(f"{pad}JOINT {node.name}")
            parent = NODES[node.parent]
            same_place = node.joint == parent.joint  # a zero-length joint (pelvis or collar)
            offset = np.zeros(3) if same_place else REST_DIRECTIONS[node.joint] * lengths[node.joint]
            channels = "3 Zrotation Xrotation Yrotation"
        lines.extend([f"{pad}{{", f"{pad}  OFFSET {_vec(offset)}", f"{pad}  CHANNELS {channels}"])
        if node.end_site:
            end = REST_DIRECTIONS[node.child] * lengths[node.child]
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_vec(end)}", f"{pad}  }}"])
        for child_index, child in enumerate(NODES):
            if child.parent == index:
                write(child_index, depth + 1)
        lines.append(f"{pad}}}")

    write(0, 0)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / fps:.8f}"]
    # Channel order in the file is the depth-first order in which `write` visited the nodes.
    order = [_NODE[line.split()[1]] for line in lines if line.strip().startswith(("ROOT", "JOINT"))]
    for t in range(frames):
        values = np.concatenate([root_position[t], angles_deg[t, order].reshape(-1)])
        lines.append(_vec(values))
    return "\n".join(lines) + "\n"


def write_bvh(
    path: str | Path,
    poses_mm: np.ndarray,
    fps: float,
    trajectory_mm: np.ndarray | None = None,
    units: str = "cm",
) -> None:
    """Write `bvh_text(poses_mm, fps, trajectory_mm, units)` to `path` (raises OSError if it cannot)."""
    Path(path).write_text(bvh_text(poses_mm, fps, trajectory_mm, units))
