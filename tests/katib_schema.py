"""The shape of a Katib `Experiment` (kubeflow.org/v1beta1) whose trials are batch/v1 Jobs, as a JSON Schema.

Written from the Experiment API's Go types (ExperimentSpec, ObjectiveSpec, AlgorithmSpec,
EarlyStoppingSpec, ParameterSpec with FeasibleSpace, TrialTemplate, MetricsCollectorSpec) and the
rules of Katib's validating webhook: positive trial counts, feasible spaces that fit the parameter
type, trial parameter names without braces, a trial template without metadata name or namespace,
success and failure conditions. The Job part covers the pod fields a trial uses. Unknown keys are
rejected wherever we describe an object fully; a cluster is still the final judge.
"""

_NUMBER_TEXT = {"type": "string", "pattern": r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$"}
_QUANTITY = {"type": "string", "pattern": r"^\d+(\.\d+)?(m|[KMGTPE]i?)?$"}
_DNS_LABEL = {"type": "string", "maxLength": 63, "pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$"}
_SETTINGS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "value"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1}, "value": {"type": "string"}},
    },
}

_OBJECTIVE = {
    "type": "object",
    "required": ["type", "objectiveMetricName"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["maximize", "minimize"]},
        "goal": {"type": "number"},
        "objectiveMetricName": {"type": "string", "minLength": 1},
        "additionalMetricNames": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
        "metricStrategies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "value"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "value": {"enum": ["min", "max", "latest"]}},
            },
        },
    },
}

_ALGORITHM = {
    "type": "object",
    "required": ["algorithmName"],
    "additionalProperties": False,
    "properties": {
        "algorithmName": {"enum": ["random", "grid", "tpe", "multivariate-tpe", "cmaes", "bayesianoptimization",
                                   "hyperband", "sobol", "pbt", "enas", "darts"]},
        "algorithmSettings": _SETTINGS,
    },
}

_EARLY_STOPPING = {
    "type": "object",
    "required": ["algorithmName"],
    "additionalProperties": False,
    "properties": {
        "algorithmName": {"const": "medianstop"},
        "algorithmSettings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "value"],
                "additionalProperties": False,
                "properties": {"name": {"enum": ["min_trials_required", "start_step"]},
                               "value": {"type": "string", "pattern": r"^[1-9]\d*$"}},
            },
        },
    },
}

_FEASIBLE_SPACE = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "min": _NUMBER_TEXT,
        "max": _NUMBER_TEXT,
        "step": _NUMBER_TEXT,
        "list": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "distribution": {"enum": ["uniform", "logUniform", "normal", "logNormal"]},
    },
}

_PARAMETER = {
    "type": "object",
    "required": ["name", "parameterType", "feasibleSpace"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "parameterType": {"enum": ["int", "double", "categorical", "discrete"]},
        "feasibleSpace": _FEASIBLE_SPACE,
    },
    "allOf": [
        {   # numbers take bounds, not a list
            "if": {"properties": {"parameterType": {"enum": ["int", "double"]}}},
            "then": {"properties": {"feasibleSpace": {"required": ["min", "max"], "not": {"required": ["list"]}}}},
        },
        {   # choices take a list, not bounds
            "if": {"properties": {"parameterType": {"enum": ["categorical", "discrete"]}}},
            "then": {"properties": {"feasibleSpace": {
                "required": ["list"],
                "not": {"anyOf": [{"required": ["min"]}, {"required": ["max"]}, {"required": ["step"]}, {"required": ["distribution"]}]},
            }}},
        },
        {   # an int is bounded by integers
            "if": {"properties": {"parameterType": {"const": "int"}}},
            "then": {"properties": {"feasibleSpace": {"properties": {
                "min": {"pattern": r"^-?\d+$"}, "max": {"pattern": r"^-?\d+$"}, "step": {"pattern": r"^\d+$"}}}}},
        },
    ],
}

_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "additionalProperties": False,
    "properties": {
        "name": _DNS_LABEL,
        "image": {"type": "string", "minLength": 1},
        "command": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                               "value": {"type": "string"}, "valueFrom": {"type": "object"}},
            },
        },
        "resources": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "requests": {"type": "object", "additionalProperties": _QUANTITY},
                "limits": {"type": "object", "additionalProperties": _QUANTITY},
            },
        },
        "volumeMounts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "mountPath"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "mountPath": {"type": "string", "pattern": "^/"},
                               "readOnly": {"type": "boolean"}, "subPath": {"type": "string"}},
            },
        },
        "workingDir": {"type": "string"},
    },
}

_VOLUME = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "minProperties": 2,
    "maxProperties": 2,  # a name and exactly one source
    "properties": {
        "name": _DNS_LABEL,
        "emptyDir": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"medium": {"enum": ["", "Memory"]}, "sizeLimit": _QUANTITY},
        },
        "persistentVolumeClaim": {
            "type": "object",
            "required": ["claimName"],
            "additionalProperties": False,
            "properties": {"claimName": {"type": "string", "minLength": 1}, "readOnly": {"type": "boolean"}},
        },
        "configMap": {"type": "object"},
        "secret": {"type": "object"},
    },
}

_POD_SPEC = {
    "type": "object",
    "required": ["containers", "restartPolicy"],
    "additionalProperties": False,
    "properties": {
        "restartPolicy": {"enum": ["Never", "OnFailure"]},  # a Job's pods never restart Always
        "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
        "volumes": {"type": "array", "items": _VOLUME},
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        "tolerations": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["Equal", "Exists"]},
                    "value": {"type": "string"},
                    "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                    "tolerationSeconds": {"type": "integer"},
                },
            },
        },
        "serviceAccountName": {"type": "string"},
        "securityContext": {"type": "object"},
    },
}

_JOB = {
    "type": "object",
    "required": ["apiVersion", "kind", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "batch/v1"},
        "kind": {"const": "Job"},
        "metadata": {  # Katib names each trial's Job itself: no name or namespace here
            "type": "object",
            "additionalProperties": False,
            "properties": {"labels": {"type": "object"}, "annotations": {"type": "object"}},
        },
        "spec": {
            "type": "object",
            "required": ["template"],
            "additionalProperties": False,
            "properties": {
                "backoffLimit": {"type": "integer", "minimum": 0},
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                "template": {
                    "type": "object",
                    "required": ["spec"],
                    "additionalProperties": False,
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                           "annotations": {"type": "object", "additionalProperties": {"type": "string"}}},
                        },
                        "spec": _POD_SPEC,
                    },
                },
            },
        },
    },
}

_TRIAL_TEMPLATE = {
    "type": "object",
    "required": ["primaryContainerName", "successCondition", "failureCondition", "trialParameters", "trialSpec"],
    "additionalProperties": False,
    "properties": {
        "retain": {"type": "boolean"},
        "primaryContainerName": {"type": "string", "minLength": 1},
        "primaryPodLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "successCondition": {"type": "string", "minLength": 1},
        "failureCondition": {"type": "string", "minLength": 1},
        "trialParameters": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "reference"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": r"^[^{}]+$"},
                    "reference": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                },
            },
        },
        "trialSpec": _JOB,
    },
}

_METRICS_COLLECTOR = {
    "type": "object",
    "required": ["collector"],
    "additionalProperties": False,
    "properties": {
        "collector": {
            "type": "object",
            "required": ["kind"],
            "additionalProperties": False,
            "properties": {
                "kind": {"enum": ["StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None", "Push"]},
                "customCollector": {"type": "object"},
            },
        },
        "source": {"type": "object"},
    },
}

EXPERIMENT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1beta1"},
        "kind": {"const": "Experiment"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": _DNS_LABEL,
                "namespace": _DNS_LABEL,
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["objective", "algorithm", "parameters", "trialTemplate"],
            "additionalProperties": False,
            "properties": {
                "objective": _OBJECTIVE,
                "algorithm": _ALGORITHM,
                "earlyStopping": _EARLY_STOPPING,
                "parameters": {"type": "array", "minItems": 1, "items": _PARAMETER},
                "trialTemplate": _TRIAL_TEMPLATE,
                "parallelTrialCount": {"type": "integer", "minimum": 1},
                "maxTrialCount": {"type": "integer", "minimum": 1},
                "maxFailedTrialCount": {"type": "integer", "minimum": 0},
                "metricsCollectorSpec": _METRICS_COLLECTOR,
                "resumePolicy": {"enum": ["Never", "LongRunning", "FromVolume"]},
            },
        },
    },
}
