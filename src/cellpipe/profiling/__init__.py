"""Morphological profiles from a trained run: embeddings per site and well (embed), batch
correction fitted on control wells (correct), mAP and accuracy of the result (evaluate), and the
whole flow of src/profile.py (pipeline)."""
