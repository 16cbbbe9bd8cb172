"""The hand-in notebook's support: reading a run's W&B media back into the notebook (`media`).
`make notebook` executes it (jupytext, papermill and nbconvert's own command lines)."""
