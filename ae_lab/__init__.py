"""ae-lab: reconstruction-based anomaly detection on MVTec AD."""

__version__ = "0.1.0"
