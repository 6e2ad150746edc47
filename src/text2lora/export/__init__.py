"""Adapters in other programs' formats: :mod:`text2lora.export.gguf` (llama.cpp, Ollama)."""
