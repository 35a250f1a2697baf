"""The object-detection decoders by name, as a model's manifest entry or a config names them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from streamvision.decoders.boxes import DecodedBoxes, DecodeParams
from streamvision.decoders.centernet import decode_centernet
from streamvision.decoders.nanodet import decode_nanodet
from streamvision.decoders.ssd import decode_ssd
from streamvision.decoders.yolov5 import decode_yolov5
from streamvision.decoders.yolov8 import decode_yolov8

DetectionDecoder = Callable[[Sequence[np.ndarray], tuple[int, int], DecodeParams], DecodedBoxes]

DETECTION_DECODERS: dict[str, DetectionDecoder] = {
    "centernet": decode_centernet,
    "nanodet": decode_nanodet,
    "yolov5": decode_yolov5,
    "yolov8": decode_yolov8,
    "yolo11": decode_yolov8,
    "ssd": decode_ssd,
}


def detection_decoder(name: str) -> DetectionDecoder:
    """The decoder registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    try:
        return DETECTION_DECODERS[name]
    except KeyError:
        valid = ", ".join(sorted(DETECTION_DECODERS))
        raise ValueError(f"unknown detection decoder {name!r}; valid: {valid}") from None
