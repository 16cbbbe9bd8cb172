"""Evaluation: anomaly maps and scores (`scoring`), the test step's predictions gathered once
(`predictions`), the metrics computed from them (`metrics`) and the latent codes (`latents`)."""
