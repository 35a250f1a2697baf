"""A loopback RTSP server for the network-source tests: serves an H.264 mp4 in an endless loop.

Runs with the system Python (``/usr/bin/python3``), which has GStreamer's introspection bindings;
the project's virtualenv does not need them. The clip's H.264 access units are sent as they are
(no re-encoding), paced at the clip's frame rate, and start again at the first frame after the last.
Every client gets its own stream from the first frame.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file streamvision/data/carphone.mp4
    # -> rtsp://127.0.0.1:8554/stream ; prints "ready <url>" on stdout once it accepts clients

``--credentials user:pass`` makes the server demand Basic authentication; ``--tls CERT KEY`` serves
``rtsps://`` (RTSP over TLS) with that certificate.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from fractions import Fraction
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtspServer  # noqa: E402

AU_CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


def load_access_units(path: str) -> tuple[list[bytes], Fraction]:
    """The clip's H.264 access units (parameter sets before every keyframe) and its frame rate."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! {AU_CAPS} '
        "! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    units: list[bytes] = []
    rate = Fraction(30)
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        if not units:
            structure = sample.get_caps().get_structure(0)
            ok, num, den = structure.get_fraction("framerate")
            if ok and num > 0 and den > 0:
                rate = Fraction(num, den)
        buffer = sample.get_buffer()
        units.append(buffer.extract_dup(0, buffer.get_size()))
    pipeline.set_state(Gst.State.NULL)
    if not units:
        raise SystemExit(f"{path}: no H.264 frames found")
    return units, rate


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """One looping stream per client, fed from the access units through appsrc."""

    def __init__(self, units: list[bytes], rate: Fraction) -> None:
        super().__init__()
        self.units = units
        self.rate = rate
        self.set_shared(False)
        caps = f"{AU_CAPS},framerate={rate.numerator}/{rate.denominator}"
        self.set_launch(
            f"( appsrc name=src format=time is-live=false caps={caps} "
            "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: Any, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        duration = Gst.util_uint64_scale(Gst.SECOND, self.rate.denominator, self.rate.numerator)
        state = {"n": 0}

        def need_data(src: Any, _length: int) -> None:
            n = state["n"]
            data = self.units[n % len(self.units)]
            buffer = Gst.Buffer.new_wrapped(data)
            buffer.pts = buffer.dts = n * duration
            buffer.duration = duration
            state["n"] = n + 1
            src.emit("push-buffer", buffer)

        appsrc.connect("need-data", need_data)


def die_with_parent() -> None:
    """Ends this server when the process that started it dies, even by SIGKILL (Linux)."""
    parent = os.getppid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", required=True, help="an H.264 mp4")
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--credentials", help="user:pass; clients must authenticate")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="PEM files: serve rtsps://")
    args = parser.parse_args()

    die_with_parent()
    Gst.init(None)
    units, rate = load_access_units(args.file)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = LoopFactory(units, rate)
    if args.credentials or args.tls:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        if args.credentials:
            user, _, password = args.credentials.partition(":")
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        else:
            auth.set_default_token(token)  # TLS alone: anyone may watch
        if args.tls:
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(*args.tls))
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    scheme = "rtsps" if args.tls else "rtsp"
    print(f"ready {scheme}://127.0.0.1:{args.port}{args.path} {len(units)} frames at {rate} fps", flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
