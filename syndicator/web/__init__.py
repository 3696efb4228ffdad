"""The HTTP side: the aiohttp app serving published files, health, metrics and subscription pages.

Takes requests; gives files, pages and form outcomes handed to the mail desks.
"""
