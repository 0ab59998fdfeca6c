"""What a GPU machine without the shared data and without the MiniLM package needs for the GPU checks
(`benchmarks/gpu_checks.sh`), packed small enough to copy there, and unpacked there.

    python benchmarks/gpu_bundle.py pack DIR      # here: DIR/data (CoNLL-2003, corpus) and DIR/minilm-l6-fp16
    python benchmarks/gpu_bundle.py unpack DIR [--into BASE]   # there: the base in fp32 again (default DIR/minilm-l6)

The MiniLM-L6 weights travel in fp16 (44 MB instead of 87 MB) and are widened back to fp32 on
arrival: every runner then starts from the same weights, rounded once to fp16 precision (a relative
change below 5e-4), which is what a speed comparison and an F1 comparison between runners need. Its
absolute F1 can differ from the fp32 base's in the last digits. Needs only torch, safetensors and the
standard library (nlpstd's `resolve_base` to find the base when packing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
DATA_FILES = ["conll2003/train.txt", "conll2003/dev.txt", "conll2003/test.txt", "conll2003/README.md", "corpus"]
BASE_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def pack(bundle: Path, data: Path) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from nlpstd.models.build import resolve_base

    for name in DATA_FILES:
        source, target = data / name, bundle / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    base, narrow = Path(resolve_base("minilm-l6")), bundle / "minilm-l6-fp16"
    narrow.mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        shutil.copy2(base / name, narrow / name)
    weights = load_file(base / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, narrow / "model.safetensors")
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    print(f"packed {bundle}: {size / 2**20:.1f} MiB")


def unpack(bundle: Path, wide: Path | None = None) -> None:
    narrow, wide = bundle / "minilm-l6-fp16", wide or bundle / "minilm-l6"
    wide.mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        shutil.copy2(narrow / name, wide / name)
    weights = load_file(narrow / "model.safetensors")
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, wide / "model.safetensors",
              metadata={"format": "pt"})
    print(f"unpacked {wide} (fp32)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("NLPSTD_DATA", REPO.parent / "shared" / "data")),
                        help="pack: the data root (default: $NLPSTD_DATA, else ../shared/data beside the repository)")
    parser.add_argument("--into", type=Path, help="unpack: the folder for the fp32 base (default: BUNDLE/minilm-l6)")
    args = parser.parse_args(argv)
    pack(args.bundle, args.data) if args.action == "pack" else unpack(args.bundle, args.into)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
