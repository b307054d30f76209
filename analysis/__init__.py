"""polyjit package."""
