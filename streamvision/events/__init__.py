"""Events: rules that watch finished frames, the one :class:`Event` type, and the outputs it goes to.

Heavy or optional pieces (paho-mqtt, httpx, PyAV) load only when an output that needs them is built.
"""

from streamvision.events.config import EventsConfig
from streamvision.events.event import EVENT_TYPES, Event

__all__ = ["EVENT_TYPES", "Event", "EventsConfig"]
