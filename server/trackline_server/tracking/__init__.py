"""Tracking: experiments and runs, their params and tags, and run search (TrackingService)."""
