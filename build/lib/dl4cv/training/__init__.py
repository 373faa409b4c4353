"""Training wiring: optimizers and schedules, checkpoints and resume, the fit loop."""
