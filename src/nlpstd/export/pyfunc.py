"""The exported model as an MLflow `pyfunc` model: texts in, entities with character offsets (or a
label with scores) out, through the same `Predictor` as `nlpstd predict`, so a model served by MLflow
decodes entities exactly as evaluation counted them.

It is stored as a *model from code*: the artifact holds `mlflow_model.py` (which names
`NlpstdModel`; MLflow runs it on load) and the model files under `artifacts/model` (safetensors or ONNX, tokenizer, config,
`nlpstd.json`). Nothing is pickled; loading it needs nlpstd installed. MLflow is imported here only,
and this module only when a pyfunc model is written or loaded, so nlpstd imports without MLflow.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from nlpstd.export.serving import FOLDERS
from nlpstd.tracking import package_version

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
# Texts in; `split` as a parameter, which MLflow passes on only when the signature declares it (a
# type hint on `predict` would replace this signature, params and all).
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("string")]),
                           params=ParamSchema([ParamSpec("split", "string", "tokenizer")]))


class NlpstdModel(mlflow.pyfunc.PythonModel):
    """Loads the model folder once with `Predictor`; `predict` takes texts and returns, per text,
    what `nlpstd predict --json` prints for it."""

    def load_context(self, context) -> None:
        from nlpstd.predict import Predictor

        self.predictor = Predictor(context.artifacts["model"])

    def predict(self, context, model_input, params=None):  # -> list[dict]
        """`model_input`: texts, as a list or a one-column DataFrame (what MLflow's signature check
        hands over); `params={"split": "whitespace"}` for text already split into words."""
        texts = model_input.iloc[:, 0] if hasattr(model_input, "iloc") else model_input
        return self.predictor([str(text) for text in texts], (params or {}).get("split", "tokenizer"))


def save_pyfunc(model_dir: Path, path: Path, fmt: str = "safetensors") -> Path:
    """Writes the pyfunc model to `path` (which must not exist) with the files of one format only:
    the folder's own files for safetensors, the format's folder (which serves alone) for ONNX."""
    source = Path(model_dir) / FOLDERS[fmt]
    with tempfile.TemporaryDirectory(prefix="nlpstd-pyfunc-") as tmp:
        files = Path(tmp) / "model"
        files.mkdir()
        for file in source.iterdir():
            if file.is_file():
                shutil.copy2(file, files / file.name)
        mlflow.pyfunc.save_model(str(path), python_model=str(MODEL_CODE), artifacts={"model": str(files)},
                                 pip_requirements=[f"nlpstd=={package_version()}"], signature=SIGNATURE)
    return Path(path)
