"""Pure builders: specs in, Kubernetes object dicts out, ready for server-side apply."""
