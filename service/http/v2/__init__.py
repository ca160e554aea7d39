"""The Open Inference Protocol (KServe v2) over REST, as Triton serves it.

:mod:`.routes` holds the endpoints, :mod:`.schemas` the JSON objects of the protocol,
:mod:`.codec` turns request bodies into images and model outputs into response bodies (JSON
tensors and Triton's binary tensor extension), and :mod:`.errors` gives every failure the
protocol's ``{"error": ...}`` shape.
"""
