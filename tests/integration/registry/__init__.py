"""Gates, approval, promotion and conflict-safe alias moves against the real stack."""
