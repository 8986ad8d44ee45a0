"""Replicate the E2E NLG rows of the LoRA paper's Table 3 (GPT-2 Medium) with minipeft's own LoRA and prefix.

    python scripts/replicate_paper.py --model gpt2-medium --methods lora prefix --out results/e2e.json
    python scripts/replicate_paper.py --model mini-gpt2 --data offline --max-steps 3 --n-test 8

The code and its documentation: ``minipeft/tools/replicate_paper.py``.
"""

from minipeft.tools.replicate_paper import main

if __name__ == "__main__":
    main()
