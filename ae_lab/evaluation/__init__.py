"""Evaluation: the test step's predictions, gathered once, and the metrics computed from them."""
