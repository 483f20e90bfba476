"""Visual tokens per camera image against the per-camera pixel budget (``model.max_pixels``), per backbone family.

The Qwen processors are built with the patch geometry of the released checkpoints (Qwen2.5-VL: patch 14, merge 2;
Qwen3-VL: patch 16, merge 2) and Qwen2.5-VL's released pixel range (3136 .. 12845056), so "default" is what a
1920x1080 NAVSIM camera costs out of the box. The other families are the tiny presets (their token counts come from
the input size and tiling, not from the weights). Counts are read from the processor's own output (image tokens in
``input_ids``). Run: ``python benchmarks/bench_visual_tokens.py``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vla_drive.model.backbone import VLMBackbone
from vla_drive.model.presets import CHAT_TEMPLATES, PRESETS, build_tokenizer
from vla_drive.model.processor import ImageSizing, allow_image_sizes, no_video, visual_token_count

CAMERA = (1920, 1080)  # NAVSIM's camera resolution
BUDGETS = {
    "default": None,
    "1280x720": 1280 * 720,
    "960x540": 960 * 540,
    "640x360": 640 * 360,
    "448x252": 448 * 252,
}


def released_qwen_processor(family: str):
    """A Qwen processor with the released image settings and the offline tokenizer."""
    import transformers as T

    patch = 14 if family == "qwen2_5_vl" else 16
    image_processor = T.Qwen2VLImageProcessorPil(
        min_pixels=3136, max_pixels=12845056, patch_size=patch, temporal_patch_size=2, merge_size=2
    )
    cls = T.Qwen2_5_VLProcessor if family == "qwen2_5_vl" else T.Qwen3VLProcessor
    template = CHAT_TEMPLATES[family]
    processor = no_video(cls)(image_processor=image_processor, tokenizer=build_tokenizer(), chat_template=template)
    return processor, patch * 2


def main() -> None:
    camera = Image.fromarray(np.random.default_rng(0).integers(0, 255, (CAMERA[1], CAMERA[0], 3), dtype=np.uint8))
    print(f"visual tokens of one {CAMERA[0]}x{CAMERA[1]} camera image (x4 cameras in brackets) per pixel budget\n")
    print("| family | " + " | ".join(BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    for family in ("qwen2_5_vl", "qwen3_vl"):
        processor, grid = released_qwen_processor(family)
        cells = []
        for budget in BUDGETS.values():
            sizing = ImageSizing((budget,) if budget else (), None, grid)
            if budget:
                allow_image_sizes(processor, grid * grid, budget)
            image = sizing.fit(camera)
            tokens = visual_token_count(processor, image)
            cells.append(f"{tokens} ({4 * tokens}) at {image.width}x{image.height} in")
        print(f"| {family} (released settings) | " + " | ".join(cells) + " |")
    for name, preset in PRESETS.items():
        if not name.startswith("tiny-") or preset.family.startswith("qwen"):
            continue
        backbone = VLMBackbone.from_preset(name)
        cells = []
        for budget in BUDGETS.values():
            image = backbone.image_sizing((budget,) if budget else ()).fit(camera)
            cells.append(str(backbone.visual_tokens(image)))
        print(f"| {preset.family} (preset {name}, {preset.image_size} px input) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
