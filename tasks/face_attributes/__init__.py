"""Face attributes (the paper's Table 12): a multi-label MobileNetV1 (or any timm model) on CelebA's release layout."""
