"""kdrun: how much does distilling a large teacher help a small model trained on K shots?"""

__version__ = "0.1.0"
