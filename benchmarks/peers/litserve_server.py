"""The model behind LitServe: ``POST /predict`` with ``{"image": <base64>}`` (LitServe hands
a ``LitAPI`` the parsed JSON or form of a request), answered with ``{"predictions":
[{"label", "index", "score"}, ...]}`` as Argos's ``/classify`` answers.

Run by ``python -m benchmarks.peers`` with the peers' interpreter. LitServe's inference
workers batch: each collects up to ``--max-batch-size`` requests, waiting up to
``--batch-timeout-ms`` for them, decodes them and runs them in one onnxruntime call.
"""

import argparse
import base64
import dataclasses
from pathlib import Path

import litserve as ls

from benchmarks.peers.classifier import Classifier

# No ``from __future__ import annotations`` here: LitServe reads the type of
# ``decode_request``'s ``request`` at run time, and a missing one means "parse the JSON".


class ArgosOnLitServe(ls.LitAPI):
    """The classifier as a ``LitAPI``; each inference worker opens its own session."""

    def __init__(self, artifact: Path, threads: int, max_batch_size: int, batch_timeout_s: float):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.artifact, self.threads = artifact, threads

    def setup(self, device):
        self.classifier = Classifier(self.artifact, threads=self.threads)
        self.classifier.warm_up(self.max_batch_size)

    def decode_request(self, request):
        return self.classifier.prepare(base64.b64decode(request["image"]))

    def batch(self, inputs):
        return inputs

    def predict(self, images):
        return self.classifier.classify(images)

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return {"predictions": [dataclasses.asdict(prediction) for prediction in output]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0)
    args = parser.parse_args()
    api = ArgosOnLitServe(
        args.artifact, args.threads, args.max_batch_size, args.batch_timeout_ms / 1000
    )
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
