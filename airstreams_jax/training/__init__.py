"""Training: the jitted steps, the train/eval loop, the objective, the
optimiser and checkpoints (`train.train_and_evaluate` is the entry)."""
