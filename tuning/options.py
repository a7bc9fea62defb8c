"""What the tuner's command line offers by name: the tuners, and the objectives with their direction.

Plain data, so that `python -m tuning` checks --tuner and --objective before TensorFlow starts; tuning.search
builds the tuners and objectives these names stand for (tests/test_tuning.py checks that the two agree).
"""

TUNER_NAMES = ("random", "bayesian", "hyperband", "grid")
OBJECTIVES = {"external_auc": "max", "cv_auc": "max", "val_auc": "max", "val_f1": "max", "val_loss": "min"}
