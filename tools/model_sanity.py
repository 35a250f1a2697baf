"""What each zoo model must say about real photos from scikit-image (used by ``build_models.py``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from model_labels import COCO80

Run = Callable[[np.ndarray], dict[str, np.ndarray]]
"""The built ONNX model on one input tensor (in its own layout), outputs by (final) name."""


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without overflow


def face_found(run: Run, photos: dict[str, np.ndarray]) -> str:
    score = float(_sigmoid(run(photos["astronaut"])["classificators"]).max())
    if score < 0.5:
        raise BuildError(f"astronaut: best face score {score:.3f} < 0.5")
    return f"astronaut face score {score:.3f}"


def argmax_label(output: str, labels: list[str], expected: dict[str, str]) -> Callable[[Run, dict], str]:
    def check(run: Run, photos: dict[str, np.ndarray]) -> str:
        said = []
        for name, want in expected.items():
            probs = run(photos[name])[output].reshape(-1)
            got = labels[int(np.argmax(probs))]
            if got != want:
                raise BuildError(f"{name}: {got} ({probs.max():.2f}), expected {want}")
            said.append(f"{name} -> {got} {probs.max():.2f}")
        return ", ".join(said)

    return check


OBJECTS = {"astronaut": "person", "chelsea": "cat", "coffee": "cup"}


def centernet_says(run: Run, photos: dict[str, np.ndarray]) -> str:
    said = []
    for name, want in OBJECTS.items():
        det = run(photos[name])["detections"][0]
        classes = {COCO80[int(c)] for c in det[det[:, 4] > 0.3, 5]}
        if want not in classes:
            raise BuildError(f"{name}: no {want} above 0.3 (found {sorted(classes)})")
        best = det[det[:, 5] == COCO80.index(want), 4].max()
        said.append(f"{name} -> {want} {best:.2f}")
    return ", ".join(said)


def nanodet_says(run: Run, photos: dict[str, np.ndarray]) -> str:
    said = []
    # NanoDet-m does see the coffee cup, but below 0.3 (its top class there is "dining table").
    for name, want in [("astronaut", "person"), ("chelsea", "cat")]:
        out = run(photos[name])
        scores = np.concatenate([out[f"cls_{s}"][0] for s in (8, 16, 32)])
        best = scores.max(axis=0)
        found = {COCO80[i] for i in np.flatnonzero(best > 0.3)}
        if want not in found:
            raise BuildError(f"{name}: no {want} above 0.3 (found {sorted(found)})")
        said.append(f"{name} -> {want} {best[COCO80.index(want)]:.2f}")
    coffee = np.concatenate([run(photos["coffee"])[f"cls_{s}"][0] for s in (8, 16, 32)]).max(axis=0)
    said.append(
        f"coffee -> cup {coffee[COCO80.index('cup')]:.2f}, {COCO80[int(coffee.argmax())]} {coffee.max():.2f}"
    )
    return ", ".join(said)


def person_mask(output: str, channel: int, softmax: bool = False) -> Callable[[Run, dict], str]:
    """The astronaut's person mask must cover a plausible share (20-90 %) of the letterboxed frame."""

    def check(run: Run, photos: dict[str, np.ndarray]) -> str:
        scores = run(photos["astronaut"])[output][0]
        if softmax:
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
        mask = scores[..., channel]
        share = float((mask > 0.5).mean())
        if not 0.2 < share < 0.9:
            raise BuildError(f"astronaut: person mask covers {share:.0%} of the image")
        return f"astronaut person mask {share:.0%} of the frame"

    return check


def movenet_says(run: Run, photos: dict[str, np.ndarray]) -> str:
    keypoints = run(photos["astronaut"])["keypoints"].reshape(17, 3)
    nose, score = keypoints[0], float(keypoints[:7, 2].mean())
    if score < 0.3:
        raise BuildError(f"astronaut: head keypoints score {score:.2f}")
    return f"astronaut head keypoints score {score:.2f}, nose at y={nose[0]:.2f} x={nose[1]:.2f}"


def report(*outputs: str) -> Callable[[Run, dict], str]:
    def check(run: Run, photos: dict[str, np.ndarray]) -> str:
        out = run(photos["astronaut"])
        return ", ".join(f"{o} {np.round(out[o].reshape(-1)[:4], 3).tolist()}" for o in outputs)

    return check


def onet_face(run: Run, photos: dict[str, np.ndarray]) -> str:
    prob = float(run(photos["astronaut"])["face_prob"].reshape(-1, 2)[0, 1])
    if prob < 0.9:
        raise BuildError(f"astronaut face crop: face probability {prob:.3f}")
    return f"astronaut face crop: face probability {prob:.3f}"
