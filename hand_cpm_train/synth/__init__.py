"""Synthetic training data: a skinned hand mesh (WebXR generic-hand), posed within anatomical
limits, rendered headless with moderngl over varied backgrounds, with exact 21-keypoint labels."""
