"""Pure-numpy decoders, one module per model family: raw output tensors in, boxes out."""
