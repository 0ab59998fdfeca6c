"""Model shapes and token-budget buckets: plain Python, no pydantic, so that code which runs where
only torch is installed (benchmarks/train_throughput.py on a GPU image) uses the very rules the
standard applies rather than copies of them."""

from __future__ import annotations

# Miniature BERT shapes (layers, hidden); heads = hidden / 64 and FFN = 4 x hidden unless overridden.
SIZES: dict[str, tuple[int, int]] = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}


def bucket_widths(max_length: int) -> list[int]:
    """A token budget's default bucket widths: 16, 32, 64, … below `max_length`, then `max_length`."""
    widths, width = [], 16
    while width < max_length:
        widths.append(width)
        width *= 2
    return widths + [max_length]
