"""Analysis of W&B training runs: `runs` reads them (W&B API or offline folders) into three
DataFrames, `tables` turns those into tables and a ranking in words (pure functions), and
`report.run_analysis`, what `analyze.py` calls, writes `reports/<project>/` and logs the analysis
to a W&B run (job_type analysis).
"""
