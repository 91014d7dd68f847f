"""Training: run configs, the LightningModule for both families, compute budgets, exact resume, run records."""
