"""Training: T2L by SFT and by reconstruction, and PEFT LoRA baselines, all through one loop (``loop.py``)."""
