"""Networks: from-scratch NumPy models and Keras 3 convolutional networks (nn.conv)."""
