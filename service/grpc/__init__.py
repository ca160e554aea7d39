"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` beside the HTTP
API, in every worker process, on the same inference path."""
