"""MVTec AD data: scan to a table and decode images (`table`), cache and serve them (`datamodule`),
upright poses (`pose`), the download (`download`) and the synthetic set (`synthetic`).

Kept import-free so that `ae_lab.data.synthetic` and the table code load without Lightning.
"""
