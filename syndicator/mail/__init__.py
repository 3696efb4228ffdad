"""Mail subscribers: their files and sync, matching, queueing, composing, delivery and sign-up.

Takes new articles and subscriber filters; gives queued messages and the outcomes of sending them.
"""
