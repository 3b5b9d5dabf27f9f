"""exportflow HTTP front (routes land with the API issue)."""
