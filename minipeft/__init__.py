"""minipeft: prefix-tuning and LoRA built from scratch, for the course notebooks.

The two methods the course writes by hand are importable from the top level; the helpers around them
live in one module per idea (``data``, ``train``, ``metrics``, ``params``, ``memory``, ``rank``, ``forgetting``, ...).
"""

from .base_model import gpt2_tokenizer, load_base_model, load_mini_gpt2
from .lora import LoRALayer, apply_lora, disable_lora, lora_layers, merge_lora, unload_lora, unmerge_lora
from .lora_files import load_lora, save_lora
from .notebook import setup_notebook
from .params import print_trainable_parameters
from .prefix import PrefixTuningModel, PromptTuningModel
from .profiles import PROFILES, Profile, get_device, get_profile
from .seeding import seed_everything

__version__ = "0.1.0"
__all__ = [
    "PROFILES", "LoRALayer", "PrefixTuningModel", "Profile", "PromptTuningModel", "apply_lora", "disable_lora",
    "get_device", "get_profile", "gpt2_tokenizer", "load_base_model", "load_lora", "load_mini_gpt2", "lora_layers",
    "merge_lora", "print_trainable_parameters", "save_lora", "seed_everything", "setup_notebook", "unload_lora",
    "unmerge_lora",
]
