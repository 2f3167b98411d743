"""``python -m ephemeralchat_client``, the same as the ``ephemeralchat-client`` command."""

from .cli import main

if __name__ == "__main__":
    main()
