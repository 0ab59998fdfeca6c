"""MLflow's entry point for an exported nlpstd model (a "model from code"): MLflow runs this file when
it loads the model, and the model files come from the artifact's `model` entry. See `pyfunc.py`."""

from mlflow.models import set_model

from nlpstd.export.pyfunc import NlpstdModel

set_model(NlpstdModel())
