"""One Kubeflow Pipelines component per stage, each a thin typed wrapper of `nlpstd.stages.<stage>.run`.

The functions are plain; `build` turns them into components pinned to the images built from
this commit. data-prep, evaluate, export and the sweep's report run on the CPU image, the training
stages and the sweep's trials on the GPU image. The images hold nlpstd and kfp, so no package is
installed when a task starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl

from components.data_prep import data_prep
from components.evaluate import evaluate
from components.export import export
from components.finetune import finetune
from components.pretrain import pretrain
from components.sweep import sweep_report, sweep_trial


@dataclass(frozen=True)
class Components:
    data_prep: dsl.PythonComponent
    pretrain: dsl.PythonComponent
    finetune: dsl.PythonComponent
    evaluate: dsl.PythonComponent
    export: dsl.PythonComponent
    sweep_trial: dsl.PythonComponent
    sweep_report: dsl.PythonComponent


def build(cpu_image: str, gpu_image: str) -> Components:
    def component(func, image: str) -> dsl.PythonComponent:
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return Components(
        data_prep=component(data_prep, cpu_image),
        pretrain=component(pretrain, gpu_image),
        finetune=component(finetune, gpu_image),
        evaluate=component(evaluate, cpu_image),
        export=component(export, cpu_image),
        sweep_trial=component(sweep_trial, gpu_image),
        sweep_report=component(sweep_report, cpu_image),
    )
