"""The search page: a small web app over the searcher, serving photos only from the dataset root."""
