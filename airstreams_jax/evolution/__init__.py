"""Evolution of the five loss weights: the driver (`evolve.evolve`), the
tournament search (`search`) and the proxy trainings that score its
candidates (`proxy_trainer`)."""
