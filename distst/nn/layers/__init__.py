"""Layers the models are built from: graph operators and Chebyshev features (:mod:`.graph`),
diffusion convolution (:mod:`.diffusion`), graph-convolutional GRU cells (:mod:`.cells`),
HimNet's sparse tools (:mod:`.sparse`) and the HyperST layers (:mod:`.hyperst`). Layers know
torch only; models import layers, never each other's private names.
"""
