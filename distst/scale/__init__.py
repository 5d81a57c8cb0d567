"""Scaling studies: `distst scale STUDY.yaml` (distst.scale.driver)."""
