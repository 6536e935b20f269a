"""Offline building blocks for small LLaVA-family models: a word-level tokenizer and processors.

Nothing here downloads anything. The test fixtures (random tiny models of every family), the
benchmarks and the trained organism all assemble their tokenizer and processor from these pieces.
"""
