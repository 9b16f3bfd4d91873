"""BitNet b1.58: ternary layers for training, 2-bit packing, and llama.cpp GGUF export."""
