"""The model behind KServe's Python model server, Open Inference Protocol v2 over REST:
``POST /v2/models/<name>/infer`` with one ``BYTES`` input ``image`` whose element is the
base64 of the encoded image (KServe's JSON form for binary data: its binary-tensor path
decodes ``BYTES`` as UTF-8 text), answered with ``BYTES`` ``[1, k]`` strings
``"score:index:label"`` as Triton's classification extension gives them.

Run by ``python -m benchmarks.peers`` with the peers' interpreter. KServe's Python server
has no batcher (batching is a sidecar of its Kubernetes deployment), so each worker runs
one image per onnxruntime call, in its event loop as KServe runs a synchronous
``predict``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import uuid
from pathlib import Path
from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve import logging as kserve_logging

from benchmarks.peers.classifier import Classifier
from service.postprocess import Prediction

OUTPUT = "probabilities"


class ArgosOnKServe(Model):
    """The classifier as a ``kserve.Model``. KServe pickles its models into each worker
    process, so the onnxruntime session is left out of the pickle and reopened there."""

    def __init__(self, artifact: Path, threads: int, max_batch_size: int) -> None:
        self.artifact, self.threads, self.max_batch_size = artifact, threads, max_batch_size
        self.classifier = Classifier(artifact, threads=threads)
        super().__init__(self.classifier.name)

    def load(self) -> bool:
        self.classifier.warm_up(self.max_batch_size)
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"classifier": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.classifier = Classifier(self.artifact, threads=self.threads)
        self.load()

    def preprocess(self, payload: InferRequest, headers: dict[str, str] | None = None) -> list:
        return [self.classifier.prepare(base64.b64decode(data)) for data in payload.inputs[0].data]

    def predict(self, images: list, headers: dict[str, str] | None = None) -> InferResponse:
        rows = [[_triton_class(p) for p in top] for top in self.classifier.classify(images)]
        output = InferOutput(OUTPUT, shape=[len(rows), len(rows[0])], datatype="BYTES")
        output.data = [item for row in rows for item in row]
        return InferResponse(str(uuid.uuid4()), self.name, infer_outputs=[output])


def _triton_class(prediction: Prediction) -> str:
    return f"{prediction.score:f}:{prediction.index}:{prediction.label}"


def _quiet_logging() -> dict[str, Any]:
    """KServe's own logging configuration at WARNING: no line per request (uvicorn's access
    log, KServe's latency log), as Argos runs by default."""
    config = copy.deepcopy(kserve_logging.KSERVE_LOG_CONFIG)
    for logger in config["loggers"].values():
        logger["level"] = "WARNING"
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=8, help="batch sizes warmed up")
    args, _ = parser.parse_known_args()
    # Read by ModelServer when it configures logging, here and in each worker it spawns.
    model_server.args.log_config_file = _quiet_logging()
    model = ArgosOnKServe(args.artifact, args.threads, args.max_batch_size)
    model.load()
    ModelServer(
        http_port=args.port,
        workers=args.workers,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
    ).start([model])


if __name__ == "__main__":
    main()
