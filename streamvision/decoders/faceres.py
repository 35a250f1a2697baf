"""FaceRes (Human's face descriptor model) decoder and matching.

Tensor contract (``faceres``): input (N, 224, 224, 3) float32 RGB 0..255, a face crop about 1.4 x
the detector's box; outputs ``gender`` (N, 1), ``age`` (N, 100) and ``descriptor`` (N, 1024). Two
crops of one face give descriptors pointing the same way: matching is the cosine similarity of
L2-normalised descriptors.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = "unknown"


def normalize(descriptors: np.ndarray) -> np.ndarray:
    """(N, D) descriptors scaled to unit length (float32); an all-zero row stays zero.

    Raises:
        ValueError: ``descriptors`` is not 2-D.

    Example:
        >>> normalize(np.array([[3.0, 4.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    if descriptors.ndim != 2:
        raise ValueError(f"descriptors must have shape (N, D), got {descriptors.shape}")
    x = np.asarray(descriptors, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), np.float32)


def match(
    descriptors: np.ndarray, gallery: np.ndarray, names: np.ndarray, threshold: float, top_k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The best-matching people for each descriptor, best first.

    A person with several gallery rows scores the best of them. Where the best similarity is below
    ``threshold`` the first name is :data:`UNKNOWN` (with that similarity).

    Args:
        descriptors: (N, D) unit-length query descriptors.
        gallery: (M, D) unit-length enrolled descriptors.
        names: (M,) the person of each gallery row.
        threshold: the cosine similarity a match needs.
        top_k: how many people to list per query (capped at the number of people).

    Returns:
        (N, k) str names and (N, k) float32 similarities.

    Raises:
        ValueError: the shapes disagree.

    Example:
        >>> g = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        >>> n, s = match(np.array([[0.6, 0.8]], np.float32), g, np.array(["ann", "bob"]), 0.7)
        >>> n.tolist(), s.round(2).tolist()
        ([['bob']], [[0.8]])
    """
    if descriptors.ndim != 2 or gallery.ndim != 2 or descriptors.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"descriptors {descriptors.shape} and gallery {gallery.shape} must be (N, D) and (M, D)"
        )
    if names.shape != (len(gallery),):
        raise ValueError(f"names must have shape ({len(gallery)},), got {names.shape}")
    people, row_person = np.unique(names, return_inverse=True)
    if len(people) == 0:
        return np.full((len(descriptors), 1), UNKNOWN), np.zeros((len(descriptors), 1), np.float32)
    similarity = descriptors.astype(np.float32) @ gallery.astype(np.float32).T  # (N, M)
    per_person = np.full((len(descriptors), len(people)), -1.0, np.float32)
    for p in range(len(people)):
        columns = similarity[:, row_person == p]
        if columns.shape[1]:
            per_person[:, p] = columns.max(axis=1)
    k = max(1, min(top_k, len(people)))
    order = np.argsort(-per_person, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(per_person, order, axis=1)
    best = people[order].astype(object)
    best[scores[:, 0] < threshold, 0] = UNKNOWN
    return best.astype(str), scores
