"""Evaluation of driving models with the navsim_eval scorer."""
