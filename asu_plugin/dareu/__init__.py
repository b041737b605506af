"""DareU: unlearning by de-attribution (PPO against a frozen owner classifier)."""
