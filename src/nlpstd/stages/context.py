"""What every stage after data-prep does first, in one place: check that its inputs are this recipe's,
set up the runtime, and settle device and precision.

A stage reads its prepared data through the context (`ctx.data`, loaded on first use: pretrain
needs only the fingerprint), and reports its time from `ctx.started`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd import runtime
from nlpstd.data import prepare as prep
from nlpstd.errors import DataError
from nlpstd.jsonio import read_json
from nlpstd.stages import identity
from nlpstd.tracking import NullTracker, Tracker
from nlpstd.train.config import EngineConfig

if TYPE_CHECKING:
    import torch

    from nlpstd.spec import Standard


@dataclass
class StageContext:
    """A running stage's standard, tracker, start time, prepared data and engine settings."""

    std: Standard
    tracker: Tracker
    data_dir: Path
    data_fingerprint: str
    engine: EngineConfig
    started: float = field(default_factory=time.perf_counter)

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def precision(self) -> str:
        return self.engine.precision

    @cached_property
    def data(self) -> prep.PreparedData:
        return prep.load(self.data_dir)

    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 2)


def begin(std: Standard, data_dir: str | Path, tracker: Tracker | None = None, inputs: dict[str, Path] | None = None,
          allow_other_inputs: bool = False) -> StageContext:
    """Start a stage over `data_dir` (data-prep's folder) and `inputs` (other stages' folders by stage
    name): each must have been made by this recipe, from the same data, unless `allow_other_inputs`;
    then seed, threads, device and process group are set up from `std.runtime`."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    identity.require(data_dir, "data-prep", std, allow_other=allow_other_inputs)
    fingerprint = _fingerprint(data_dir)
    for stage, folder in (inputs or {}).items():
        identity.require(Path(folder), stage, std, fingerprint, allow_other=allow_other_inputs)
    device = runtime.setup(std.runtime, std.seed)
    return StageContext(std, tracker or NullTracker(), data_dir, fingerprint, EngineConfig.of(std.runtime, device), started)


def _fingerprint(data_dir: Path) -> str:
    try:
        return read_json(data_dir / "summary.json")["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(data_dir, None, None, f"not a prepared-data folder ({exc}); run the prepare stage first") from None
