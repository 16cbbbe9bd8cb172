"""The hand-in notebook's support: reading a run's W&B media back into the notebook (`media`),
and executing the notebook into its committed copy (`python -m ae_lab.notebook`)."""
