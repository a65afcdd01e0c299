"""The peer of the serving benchmark: the same joblib model behind KServe's Python model server (V2 REST, and its
V2 gRPC endpoint when a gRPC port is given).

Run with a Python that has the kserve package: python kserve_peer.py MODEL_PATH NAME PORT [GRPC_PORT]
"""

import sys

import joblib
from kserve import InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import get_predict_response


class SklearnModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        return get_predict_response(payload, self.model.predict(x), self.name)  # type: ignore[union-attr]


if __name__ == "__main__":
    path, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    grpc_port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    server = ModelServer(http_port=port, grpc_port=grpc_port or port + 1, workers=1, enable_grpc=bool(grpc_port))
    server.start([SklearnModel(name, path)])
