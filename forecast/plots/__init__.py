"""Plots made from panels and saved results; kept apart from the code that computes them."""
