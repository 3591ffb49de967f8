"""Collecting: a plan and its answers turned into columns and the run report."""
