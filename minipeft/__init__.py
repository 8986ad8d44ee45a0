"""minipeft: prefix-tuning and LoRA built from scratch, for the course notebooks."""

from .base_model import gpt2_tokenizer, load_base_model, load_mini_gpt2
from .notebook import seed_everything, setup_notebook
from .profiles import PROFILES, Profile, get_device, get_profile

__version__ = "0.1.0"
__all__ = [
    "PROFILES", "Profile", "get_device", "get_profile", "gpt2_tokenizer", "load_base_model",
    "load_mini_gpt2", "seed_everything", "setup_notebook",
]
