"""Publish feeds, pages, the index and OPML as static files, and ping WebSub hubs.

Takes articles from state; gives files written atomically, only when their bytes change.
"""
