"""``streamvision bench``: measured speed of models and pipelines against baselines, in one run."""
