"""Everything a run, the analysis and the notebook draw: `images` (uint8 grids, strips, heat maps),
`interactive` (Plotly figures for W&B panels) and `static` (matplotlib figures for W&B images,
the notebook and the HTML report)."""
