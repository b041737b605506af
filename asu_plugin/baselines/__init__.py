"""The ASU paper's strongest baselines as open-unlearning trainers: ME and IDK."""
