"""The pipeline's stages: teacher, soft labels, teacher features, student, evaluation."""
