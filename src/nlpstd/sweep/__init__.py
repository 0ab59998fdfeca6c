"""Sweeps: trials of one standard over model sizes and recipe settings, and the report that ends them."""
