"""What runs in the trainer worker: the job runner, its modes, the promotion gate, recalibration."""
