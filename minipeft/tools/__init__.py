"""The course's tools: the code behind ``scripts/*.py`` and the Makefile's targets, one module per tool.

Each module's ``main(argv)`` parses its command line; ``scripts/<name>.py`` calls it, or the Makefile runs
``python -m minipeft.tools.<name>`` (``run_notebooks``, ``cache_offline``). Nothing else in ``minipeft`` imports from
here.

- ``run_notebooks``: run and time every notebook (``make timings``, ``make solutions``)
- ``store_outputs``: regenerate the outputs stored in the notebooks (``make outputs``)
- ``sync_notebooks``, ``colab_check``: Colab badges, install cells and diagrams (``make colab``, ``make colab-check``)
- ``make_figures``, ``build_slides``: the diagrams and the slide decks (``make figures``, ``make slides``)
- ``cache_offline``: cache models and data for a room without internet (``make cache``, ``make cache-check``)
- ``gpu_dry``, ``gpu_check``: the gpu profile on stand-ins (``make gpu-dry``) and on a CUDA GPU (``make gpu-check``)
- ``lr_check``: the learning-rate check behind :mod:`minipeft.recipes`
- ``replicate_paper``: the E2E rows of the LoRA paper's Table 3
"""
