"""Pictures of runs, sweeps and scaling studies (PNG, matplotlib): `distst plot DIR`."""
