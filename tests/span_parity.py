"""The four-way span check: the same texts through evaluation's written entities, `Predictor` on the
torch folder, the MLflow pyfunc model and `Predictor` on the ONNX graph must give identical entities.

Used by tests/test_span_parity.py on the tiny model, and runnable on any exported model:

    python tests/span_parity.py runs/<standard>/export/model runs/<standard>/evaluate/predictions_test.jsonl \
        [--pyfunc runs:/<export run id>/pyfunc] [--limit 500]

Evaluation located the entities of a CoNLL example in its words joined by single spaces, so the
serving paths read those texts with `split="whitespace"`: the same words, not the tokenizer's own
split of them (which cuts "U.S.-based" at its punctuation). Texts evaluation did not split into
words (JSON Lines spans) go through with the tokenizer's split, as it read them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

Entity = tuple[str, int, int, str]  # label, start, end, text
PATHS = ("evaluate", "predict", "pyfunc", "onnx")


@dataclass
class FourWay:
    texts: list[str]
    entities: dict[str, list[list[Entity]]]  # path -> per text
    onnx_file: str = ""

    def disagreements(self) -> list[tuple[int, str, dict[str, list[Entity]]]]:
        """(index, text, entities by path) of each text where the paths differ."""
        out = []
        for i, text in enumerate(self.texts):
            found = {name: self.entities[name][i] for name in PATHS}
            if len({tuple(v) for v in found.values()}) > 1:
                out.append((i, text, found))
        return out

    def count(self, path: str = "evaluate") -> int:
        return sum(len(e) for e in self.entities[path])


@dataclass
class _Rows:
    texts: list[str] = field(default_factory=list)
    entities: list[list[Entity]] = field(default_factory=list)
    split: str = "tokenizer"  # how evaluation split these texts into words


def key(entity: dict) -> Entity:
    return entity["label"], entity["start"], entity["end"], entity["text"]


def entities_of(results: list[dict]) -> list[list[Entity]]:
    return [[key(e) for e in result["entities"]] for result in results]


def four_way_entities(model_dir: Path, predictions: Path, pyfunc_uri: str | None = None, limit: int | None = None) -> FourWay:
    """Entities of evaluation's `predictions_<split>.jsonl` rows, and of their texts through the three
    serving paths. Without `pyfunc_uri` the pyfunc model is written from `model_dir` the way export
    writes it; without `model_dir/onnx/model.onnx` an ONNX graph is exported to a scratch folder."""
    import mlflow

    from nlpstd.export.pyfunc import save_pyfunc
    from nlpstd.predict import Predictor

    model_dir = Path(model_dir)
    torch_predictor = Predictor(model_dir)
    rows = _evaluation_rows(predictions, limit)
    with tempfile.TemporaryDirectory(prefix="span-parity-") as scratch:
        if pyfunc_uri is None:
            pyfunc_uri = str(save_pyfunc(model_dir, Path(scratch) / "pyfunc"))
        onnx_file = _onnx_file(model_dir, Path(scratch) / "onnx", torch_predictor.task)
        split = rows.split
        found = {
            "evaluate": rows.entities,
            "predict": entities_of(torch_predictor(rows.texts, split)),
            "pyfunc": entities_of(mlflow.pyfunc.load_model(pyfunc_uri).predict(rows.texts, params={"split": split})),
            "onnx": entities_of(Predictor(onnx_file)(rows.texts, split)),
        }
    return FourWay(rows.texts, found, str(onnx_file))


def _evaluation_rows(predictions: Path, limit: int | None) -> _Rows:
    rows = _Rows()
    for line in Path(predictions).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "entities" not in row:
            raise ValueError(f"{predictions}: rows carry no entities (a classification model, or written before the span decoder)")
        rows.split = "whitespace" if "tokens" in row else "tokenizer"
        rows.texts.append(row["text"])
        rows.entities.append([key(e) for e in row["entities"]])
        if limit and len(rows.texts) >= limit:
            break
    return rows


def _onnx_file(model_dir: Path, scratch: Path, task: str) -> Path:
    """The shipped fp32 graph, else one exported now beside copies of the tokenizer and config."""
    shipped = model_dir / "onnx" / "model.onnx"
    if shipped.is_file():
        return shipped
    from nlpstd.export.onnx import MODEL_FILE, export_onnx
    from nlpstd.models.build import load_model, load_tokenizer

    scratch.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.is_file() and path.suffix != ".safetensors":
            shutil.copy2(path, scratch / path.name)
    token_types = "token_type_ids" in load_tokenizer(str(model_dir)).model_input_names
    return export_onnx(load_model(model_dir, task), scratch / MODEL_FILE, token_types=token_types)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Do evaluation, predict, the pyfunc model and ONNX find the same entities?")
    parser.add_argument("model_dir", type=Path, help="the exported folder (export/model)")
    parser.add_argument("predictions", type=Path, help="evaluate's predictions_<split>.jsonl for that model")
    parser.add_argument("--pyfunc", help="a logged pyfunc model (runs:/<export run id>/pyfunc); default: written from model_dir")
    parser.add_argument("--limit", type=int, help="check the first N texts only")
    args = parser.parse_args(argv)
    result = four_way_entities(args.model_dir, args.predictions, args.pyfunc, args.limit)
    differing = result.disagreements()
    print(f"{len(result.texts)} texts, {result.count()} entities in evaluation "
          f"({', '.join(f'{name} {result.count(name)}' for name in PATHS[1:])}); onnx: {result.onnx_file}")
    for i, text, found in differing[:10]:
        print(f"\n#{i}: {text}")
        for name, entities in found.items():
            print(f"  {name:<8} {entities}")
    print(f"\n{'all four agree' if not differing else f'{len(differing)} texts differ'}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
