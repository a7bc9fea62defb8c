"""VGG-16 chest X-ray classifier: loading, architecture, data, evaluation and the saved artifact."""
