"""Evolution of the five loss weights: the tournament search (`search`) and
the vmapped proxy trainings that score its candidates (`proxies.evolve`)."""
