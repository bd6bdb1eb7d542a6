"""Loss functions: pure functions of tensors, formula and paper in each docstring."""
