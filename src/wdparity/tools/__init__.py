"""What users ask beyond a verdict: translate and explain a setting, the conventions table, sweeps and grids."""
