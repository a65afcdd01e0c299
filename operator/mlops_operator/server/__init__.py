"""The model server: the data plane that ModelDeployment runs in each Pod (Open Inference Protocol V2 over REST)."""
