"""Pictures of the search: result grids, an embedding map and an HTML evaluation report."""
