"""Training: fit heads on cached features, fine-tune, choose thresholds, evaluate and report; never serving."""
