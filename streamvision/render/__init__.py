"""What the outputs show: results drawn on frames (:mod:`.annotate`) and picture effects that masks
drive (:mod:`.effects`: blur or replace the background)."""
