"""asu-plugin's Hydra configs (a package, so Hydra's pkg:// source counts it as available)."""
