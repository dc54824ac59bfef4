"""Image classification on MobileNetV1 (or any timm model): ImageNet-style folders and Stanford Dogs."""
