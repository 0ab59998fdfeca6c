"""The shape of a KServe `InferenceService` (serving.kserve.io/v1beta1), as a JSON Schema.

Written from the fields of the CRD's OpenAPI schema that a predictor with a `model` spec uses
(`spec.predictor.model`: modelFormat, runtime, protocolVersion, storageUri, args, env, resources).
Unknown keys are rejected at every level we describe, as the API server's structural schema
pruning would silently drop them; a cluster is still the final judge.
"""

_QUANTITY = {"type": "string", "pattern": r"^\d+(\.\d+)?(m|[KMGTPE]i?)?$"}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_MODEL = {
    "type": "object",
    "required": ["modelFormat"],
    "additionalProperties": False,
    "properties": {
        "modelFormat": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "version": {"type": "string"}},
        },
        "runtime": {"type": "string"},
        "protocolVersion": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
        "storageUri": {"type": "string", "pattern": r"^(s3|gs|pvc|hdfs|webhdfs|oci|hf|https?)://[^\s]+$"},
        "args": {"type": "array", "items": {"type": "string"}},
        "command": {"type": "array", "items": {"type": "string"}},
        "env": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "resources": _RESOURCES,
    },
}
INFERENCE_SERVICE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "properties": {
                "predictor": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {
                        "model": _MODEL,
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 0},
                        "serviceAccountName": {"type": "string"},
                    },
                },
                "transformer": {"type": "object"},
                "explainer": {"type": "object"},
            },
        },
    },
}
