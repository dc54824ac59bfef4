"""Face embeddings (the paper's Table 14): identity classifier teacher, embedder student, LFW verification."""
