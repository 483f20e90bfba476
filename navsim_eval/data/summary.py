"""A compact, JSON-ready description of a scene (what `navsim-eval inspect` prints, one line per scene)."""

from __future__ import annotations

from collections import Counter

from navsim_eval.scene import Scene

COMMANDS = ("left", "forward", "right", "unknown")


def scene_summary(scene: Scene) -> dict:
    """Token, log, map, current ego pose and dynamics, command, objects by class, route, red lights, future."""
    current = scene.current_frame
    ego = current.ego
    command = [int(v) for v in current.driving_command]
    counts = Counter(t.value for t in current.boxes.types)
    try:
        future = [[round(float(v), 4) for v in pose] for pose in scene.future_trajectory().poses]
    except Exception as error:  # a scene without 8 future frames still gets described
        future = f"unavailable: {error}"
    return {
        "token": scene.token,
        "log": scene.log_name,
        "map_location": scene.map_name,
        "timestamp_us": int(current.timestamp_us),
        "ego_pose": {"x": float(ego.x), "y": float(ego.y), "heading": float(ego.heading)},
        "ego_velocity": [float(ego.vx), float(ego.vy)],
        "ego_acceleration": [float(ego.ax), float(ego.ay)],
        "driving_command": COMMANDS[command.index(1)] if command.count(1) == 1 else command,
        "annotations": dict(sorted(counts.items())),
        "route_roadblock_ids": [str(r) for r in current.roadblock_ids],
        "red_lane_connectors": sorted(str(lane) for lane, red in current.traffic_lights if red),
        "future_trajectory": future,
    }


def format_scene_summary(summary: dict) -> str:
    """One text line of :func:`scene_summary`: the same facts, the future as its pose at 4 s (``--json`` has all 8).

    ``TOKEN  LOG  MAP  x= y= heading=  v= m/s  COMMAND  objects 7 vehicle, 2 pedestrian  route 1,2,3  red 7,8
    future 4 s: x= y= heading=``; a scene without objects, route or red lights says ``none``.
    """
    ego = summary["ego_pose"]
    objects = ", ".join(f"{count} {kind}" for kind, count in summary["annotations"].items()) or "none"
    future = summary["future_trajectory"]
    if isinstance(future, list) and future:
        x, y, heading = future[-1]
        future_text = f"future 4 s: x={x:.2f} y={y:.2f} heading={heading:.3f}"
    else:
        future_text = f"future {future}"
    return "  ".join(
        [
            summary["token"],
            summary["log"],
            summary["map_location"],
            f"x={ego['x']:.2f} y={ego['y']:.2f} heading={ego['heading']:.3f}",
            f"v={summary['ego_velocity'][0]:.2f} m/s",
            str(summary["driving_command"]),
            f"objects {objects}",
            "route " + (",".join(summary["route_roadblock_ids"]) or "none"),
            "red " + (",".join(summary["red_lane_connectors"]) or "none"),
            future_text,
        ]
    )
