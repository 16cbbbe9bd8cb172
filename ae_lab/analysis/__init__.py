"""Analysis of W&B training runs: a source fills three DataFrames, pure functions make the report.

`run.run_analysis` is what `analyze.py` calls: load the runs (W&B API or offline folders), build the
tables and figures, write `reports/<project>/index.html`, log them to a W&B run (job_type analysis).
"""
