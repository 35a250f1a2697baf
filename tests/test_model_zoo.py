"""Every shipped model, loaded from models/ by the runtime, says what it should about real photos.

The checks are the ones ``tools/build_models.py`` runs right after converting each model, here
applied to the committed files through the runtime's own session wrapper and preprocessing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import OnnxModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from build_models import model_input
from model_recipes import RECIPES, Recipe

CHECKED = [r for r in RECIPES if r.sanity is not None]


def test_every_recipe_is_in_the_manifest(models: ModelRegistry) -> None:
    assert sorted(r.name for r in RECIPES) == models.names()


@pytest.mark.parametrize("recipe", CHECKED, ids=[r.name for r in CHECKED])
def test_shipped_model_on_real_photos(recipe: Recipe, models: ModelRegistry) -> None:
    spec = models.get(recipe.name)
    model = OnnxModel(models.verify(recipe.name), threads=2)
    assert model.output_names == list(spec.outputs)
    photos = {name: model_input(recipe, name, spec.input) for name in recipe.photos}

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(model.output_names, model.run({spec.input.name: x}), strict=True))

    assert recipe.sanity is not None and recipe.sanity(run, photos)


def test_mtcnn_pnet_takes_any_size(models: ModelRegistry) -> None:
    spec = models.get("mtcnn_pnet")
    assert spec.input.variable_size
    model = OnnxModel(models.verify("mtcnn_pnet"))
    for h, w in [(12, 12), (90, 160)]:
        reg, prob = model.run({spec.input.name: np.zeros((1, h, w, 3), np.float32)})
        grid = (-(-(h - 2) // 2) - 4, -(-(w - 2) // 2) - 4)  # conv 3, pool 2 (same), conv 3, conv 3
        assert reg.shape == (1, *grid, 4) and prob.shape == (1, *grid, 2)
        np.testing.assert_allclose(prob.sum(axis=-1), 1.0, atol=1e-5)
