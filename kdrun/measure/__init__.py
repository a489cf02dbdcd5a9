"""Measurements the stages take: accuracy and its CI, convergence, finiteness."""
