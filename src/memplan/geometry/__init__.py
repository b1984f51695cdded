"""Tile geometry: regions, halos and receptive fields through fused groups."""
