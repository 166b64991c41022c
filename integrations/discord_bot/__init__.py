"""A Discord bot that watches and steers sweeps: ``python -m runner.integrations.discord_bot``.

``logic`` answers every command with plain Python (no discord.py in it, testable and reusable);
``app`` is the discord.py transport: slash commands, autocompletion, deferring and following up
within Discord's limits, and the loop that posts subscribed reports.
"""
