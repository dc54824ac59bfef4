"""Object detection: COCO-format data, SSD and Faster-RCNN heads on the MobileNetV1 backbone."""
