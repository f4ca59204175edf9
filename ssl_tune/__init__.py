"""ssl-tune: hyperparameter search for self-supervised image models on Ray."""

__version__ = "0.1.0"
