"""Similar-video search, near-duplicate groups and text -> video query over embeddings (faiss).

    python -m search.index --embeddings FILE --out INDEX_DIR [--kind flat|ivf|ivfpq|hnsw]
    python -m search.query --index INDEX_DIR --id VIDEO_ID [--k 20] [--json]
    python -m search.query --index INDEX_DIR --records FILE --run RUN_DIR|EXPORT_DIR
    python -m search.query --index INDEX_DIR --text "..." --run RUN_DIR
    python -m search.dedup --index INDEX_DIR --threshold 0.9 --out groups.csv
"""
import os as _os

# Keras 2 (tf-keras) must be chosen before TensorFlow is first imported (see models/__init__.py).
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
