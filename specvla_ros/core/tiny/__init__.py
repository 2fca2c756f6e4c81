"""The tiny VLA: an OpenVLA-shaped model small enough to train and test on a CPU.

config.py (TinyVLAConfig), vision.py (image encoders: patch and FiLM stems), tokenizer.py (word
pieces plus bytes), model.py (the Backbone, its save and load). The decoders treat it exactly
like OpenVLA (core/openvla/).
"""
