"""Read the article store: scan the tree, parse digest and front-matter files, ingest in workers.

Takes a store path; gives :class:`~syndicator.models.RawArticle` values and ``StoreError`` kinds.
"""
