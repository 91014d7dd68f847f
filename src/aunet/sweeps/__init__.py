"""Compute-matched sweeps: definitions, sizing per budget, hyperparameter laws, the plan, the runner, the table."""
