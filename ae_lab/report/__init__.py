"""What the hand-in notebook and the HTML report share: the notebook's steps (`handin`, `results`),
its runner (`python -m ae_lab.report.notebook`) and display helpers, the W&B media it reads back,
and `reports/<project>/index.html`."""
