"""The fine-tuning task: restaurant meaning representations (MRs) to sentences, as in E2E NLG.

An E2E example pairs an MR such as ``name[The Eagle], eatType[pub], area[riverside]`` with a human
sentence ("The Eagle is a pub by the riverside."). Three sources give the same ``(mr, ref)`` pairs:

- ``load_restaurant(split)``: the course's own offline set, made by :func:`generate_restaurants`
  (seeded, same eight slots, committed under ``data/restaurants``; rebuild with ``python -m minipeft.data``);
- ``load_e2e(split)``: the real E2E NLG data from the Hugging Face Hub (or, offline, from the cache that
  ``make cache`` filled);
- ``load_e2e_csv(path)``: a local copy of E2E in its original ``mr,ref`` CSV format.

In the ``gpu`` profile, ``load_e2e_or_offline`` reads real E2E from the Hub, or from the CSVs in the folder
``MINIPEFT_E2E_DIR`` names (E2E's own file names, :data:`E2E_FILES`), e.g. in ``make gpu-dry``.

``make_loader`` turns pairs into batches for a causal LM: ``MR || text<eos>``, with labels -100 on the
MR, the separator and the padding, so the loss is computed on the text tokens only.

The modules: :mod:`.mr` (the MR grammar), :mod:`.loaders` (the sources above), :mod:`.batches` (prompts and
batches), :mod:`.generator` (the offline set's generator). This package's namespace holds their public names.
"""


from .batches import IGNORE_INDEX, SEP, encode_pair, make_loader, prompt_text
from .generator import LANDMARKS, NAMES, VALUES, build_restaurant_files, generate_restaurants, random_mr, realise
from .loaders import (
    E2E_DEVSET_ENV,
    E2E_DIR_ENV,
    E2E_FILES,
    E2E_HUB_ID,
    E2E_HUB_REVISION,
    RESTAURANTS_DIR,
    SPLITS,
    e2e_devset_path,
    first_mrs,
    first_rows,
    group_by_mr,
    load_e2e,
    load_e2e_csv,
    load_e2e_or_offline,
    load_restaurant,
    read_csv,
    write_csv,
)
from .mr import SLOTS, Pair, check_pairs, format_mr, parse_mr

__all__ = [
    "E2E_DEVSET_ENV", "E2E_DIR_ENV", "E2E_FILES", "E2E_HUB_ID", "E2E_HUB_REVISION", "IGNORE_INDEX", "LANDMARKS",
    "NAMES", "Pair", "RESTAURANTS_DIR", "SEP", "SLOTS", "SPLITS", "VALUES", "build_restaurant_files",
    "check_pairs", "e2e_devset_path", "encode_pair", "first_mrs", "first_rows", "format_mr",
    "generate_restaurants", "group_by_mr", "load_e2e", "load_e2e_csv", "load_e2e_or_offline", "load_restaurant",
    "make_loader", "parse_mr", "prompt_text", "random_mr", "read_csv", "realise", "write_csv"
]
