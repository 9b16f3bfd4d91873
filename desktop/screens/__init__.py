"""One module per screen of the main window. Each screen is a QWidget with ``show_snapshot()`` for the
periodic state and ``on_event_<kind>`` handlers for the core events it reacts to at once."""
