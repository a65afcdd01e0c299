"""mlops-operator: a Kubernetes operator for the production side of machine learning."""

__version__ = "0.1.0"

GROUP = "mlops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
