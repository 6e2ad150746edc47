from text2lora.cli import entry

entry()
