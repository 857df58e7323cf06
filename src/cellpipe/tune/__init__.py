"""Hyperparameter studies over any config keys (Optuna), each trial a real training run."""
