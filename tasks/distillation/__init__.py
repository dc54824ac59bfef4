"""Distillation: a way of training any distillable task's model (classification, face attributes, face embeddings)
to reproduce a frozen teacher's outputs, from labelled or unlabelled images. Not a task of its own."""
