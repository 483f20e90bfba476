"""Camera renderer speed: ms per image of the example intersection, one camera (CAM_F0) and all 8 cameras.

Run on one core for figures comparable with the budget (< 15 ms for one 512 x 288 front image):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_render.py

The scene is :func:`navsim_eval.synthetic.render.example_scene` (about 225 lane polygons at 10 m pieces, 24 marking
polylines, 20 objects, 4 signal heads), rendered from a few ego poses along its approach; ``--piece-m 5`` doubles
the polygon count. "8 cameras" is one :func:`render_rig` call (the per-scene work shared); its per-image column
divides by 8. JPEG encoding (``save_jpeg``, quality 90) is timed separately, per image.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from common import median_ms

from navsim_eval.synthetic.cameras import default_rig
from navsim_eval.synthetic.render import example_scene, render_camera, render_rig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--piece-m", type=float, default=10.0, help="length of the lane polygons")
    parser.add_argument("--sizes", nargs="+", default=["256x144", "512x288", "1024x576"])
    parser.add_argument("--supersample", type=int, default=1)
    args = parser.parse_args()

    poses = [(x, -1.75, 0.0) for x in (-20.0, 0.0, 20.0)] + [(30.0, -1.75, 0.4)]
    scenes = [example_scene(ego_pose=pose, piece_m=args.piece_m) for pose in poses]
    first = scenes[0]
    segments = sum(len(m.points) - 1 for m in first.markings)
    print(
        f"scene: {len(first.road_polygons)} road polygons, {len(first.markings)} markings ({segments} segments "
        f"before dashing), {len(first.boxes)} boxes, {len(first.traffic_lights)} signal heads; {len(scenes)} ego "
        f"poses, median over poses of the median of {args.repeats} repeats, supersample {args.supersample}\n"
    )
    print("| size | 1 camera: ms / image | 8 cameras: ms / call | 8 cameras: ms / image | JPEG q90: ms / image |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        rig = default_rig(width, height)
        front = rig["CAM_F0"]
        one = np.median(
            [
                median_ms(lambda s=s, c=front: render_camera(s, c, supersample=args.supersample), args.repeats)
                for s in scenes
            ]
        )
        eight = np.median(
            [median_ms(lambda s=s, r=rig: render_rig(s, r, supersample=args.supersample), args.repeats) for s in scenes]
        )
        image = render_camera(scenes[1], front, supersample=args.supersample)
        jpeg = median_ms(lambda image=image: image.save(io.BytesIO(), format="JPEG", quality=90), args.repeats)
        print(f"| {width}x{height} | {one:.2f} | {eight:.2f} | {eight / 8:.2f} | {jpeg:.2f} |")


if __name__ == "__main__":
    main()
