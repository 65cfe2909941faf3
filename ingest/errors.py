"""The error every reader of outside data raises: a feed, a download or a brands file that cannot be used."""


class FeedError(Exception):
    """The feed could not be fetched, opened or understood; the message says why."""
