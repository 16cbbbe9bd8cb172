"""MVTec AD data: scan to a table (`table`), decode (`io`), cache (`cache`), serve (`datamodule`).

Kept import-free so that `ae_lab.data.synthetic` and the table code load without Lightning.
"""
