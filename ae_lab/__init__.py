"""ae-lab: reconstruction-based anomaly detection on MVTec AD."""

from ae_lab.config import register_resolvers

__version__ = "0.1.0"

# conf/config.yaml uses them; any import of the package (train.py, tests, the notebook) has them.
register_resolvers()
