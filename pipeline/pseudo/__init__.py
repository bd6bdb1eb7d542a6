"""Pseudo-labeling: selection and weighting of teacher predictions, and out-of-distribution scoring."""
