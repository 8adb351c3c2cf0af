"""Migration scripts, one per revision: ``NNNN_slug.py`` with revision id ``NNNN``."""
