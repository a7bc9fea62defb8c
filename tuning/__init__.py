"""Keras Tuner search over the VGG-16 head on cached frozen-base features: python -m tuning --help."""
